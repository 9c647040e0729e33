"""Run directories and what happens in them, below the commands and above training:

- ``ownership`` (one writer per run directory: the lock, what is there, claim / refuse / move aside), ``status``
  (run.json), ``resolvers`` (unique run directories), ``hydra_app`` + ``job`` (the Hydra application and its task
  function: one ``vae-train`` job, from a composed config to a finished or truthfully failed run directory);
- ``loaded`` (a run back in memory), ``scores`` (scoring a run and recording it in its eval.json);
- ``sweeps/``: the sweep summary, ranking the jobs of a sweep, SLURM job states.
"""
