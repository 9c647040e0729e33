"""Experiment trackers beside TensorBoard (``logger=mlflow``, ``logger=wandb``, or both): each gets the run's
config, its scalars per step, its pictures, and at the end its result files. ``base`` holds what they share (the
run's identity, resuming the same tracker run, the guard that drops a tracker failing mid-run), one module per
tracker. The trainer knows none by name: ``Tracker`` (tracking.py) fans out to whatever ``open_trackers`` opened.
"""
