"""Typed configs, the layer below every part that imports torch (and importing none itself):

- ``catalog``: one catalog per family of swappable parts (architectures, likelihoods, priors, objectives), the only
  place that knows their names; ``datasets``: the dataset schema and the dataset catalog (``DATASETS``);
- one schema module per group: ``architectures``, ``likelihoods``, ``priors``, ``objectives``, ``datasets``,
  ``training`` (optim, trainer, logger), ``disentanglement``; each schema checks its own values (``check``);
- ``schema``: the root schema, its ConfigStore registration, plain dict <-> typed config;
- ``validate``: runs every check and holds the checks that span groups; ``overrides``: the preflight of
  command-line overrides against the schemas; ``tree``: where the YAML tree is; ``checks``, ``enums``.
"""
