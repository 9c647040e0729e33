"""Process-wide services, the bottom layer: what every other part of vae-cli may use and nothing here knows of them.

``errors`` (the messages users see), ``atomic`` (files written whole or not at all), ``disk`` (how much a run
directory holds), ``signals`` (Ctrl-C / SIGTERM by phase), ``distributed`` (torchrun ranks), ``device`` (which torch
device), ``cpu_threads`` and ``allocator`` (CPU thread waits and malloc settings), ``preload`` (torch imported in the
background), ``version``.
"""
