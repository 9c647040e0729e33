"""The console commands, the top layer: ``train`` (vae-train: argv handling in ``train_argv``, checks before Hydra
in ``train_preflight``), ``evaluate`` (vae-eval, tables in ``eval_report``), ``sample`` (vae-sample) and
``compare`` (vae-compare); ``arguments`` has the argument types they share. Each parses its command line, imports
torch only once a command really runs, and turns a VaeCliError into one message and exit 2."""
