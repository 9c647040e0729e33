"""Sweeps (``vae-train -m``): the summary of every job (``summary``, a Hydra callback), ranking them
(``compare``, ``metrics``) and SLURM job states without an accounting database (``slurm_states``)."""
