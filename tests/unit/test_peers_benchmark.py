"""The peer benchmark's own arithmetic (benchmarks/peers.py): the FLOP counts it divides by, and its rows."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
peers = pytest.importorskip("peers")

B = 128


def _linear(n: int, i: int, o: int) -> int:
    return 2 * n * i * o


def _closed_form(k: int) -> int:
    """Matmul FLOPs of one step of the MLP 784-400-20 VAE with k decodes per image (forward, then backward: the
    gradient of every weight, and of every layer's input except the images')."""
    enc_body, enc_heads = _linear(B, 784, 400), _linear(B, 400, 40)
    dec = _linear(k * B, 20, 400) + _linear(k * B, 400, 784)
    forward = enc_body + enc_heads + dec
    backward = enc_body + 2 * enc_heads + 2 * dec
    return forward + backward


def test_step_flops_of_the_vae_and_iwae_match_the_closed_form():
    assert peers.vae_cli_step_flops([]) == _closed_form(1)
    assert peers.vae_cli_step_flops(["loss=iwae", "loss.k=5"]) == _closed_form(5)


def test_every_row_composes_and_pythae_has_its_counterpart():
    runner = (REPO / "benchmarks" / "peer_pythae.py").read_text()
    pythae_models = set(re.findall(r'^\s+"(\w+)": lambda', runner, flags=re.M))
    assert {peer for _, peer in peers.ROWS.values()} == pythae_models
    vae = peers.vae_cli_step_flops([])
    for name, (overrides, _) in peers.ROWS.items():
        if name != "VAE":
            assert peers.vae_cli_step_flops(overrides) >= vae, name  # builds, and does at least the VAE's work
