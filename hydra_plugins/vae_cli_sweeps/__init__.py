"""vae-cli's Hydra plugins: the SLURM launchers (``launchers``) and the resumable Optuna sweeper
(``optuna_sweeper``). Hydra accepts plugins only from the ``hydra_plugins`` namespace package, so they live here;
it imports every module here at start-up, so none of them imports torch."""
