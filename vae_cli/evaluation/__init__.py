"""What training and the commands both use to judge a model: ``bounds`` (ELBO, importance-weighted log p(x),
bits/dim, active units), ``terms`` (an objective's terms over a split), ``latent_views`` (traversals,
interpolations, scatter) and ``plots`` (grids and charts as images), ``tracking`` (TensorBoard), and
``disentanglement/`` (MIG, DCI, SAP, FactorVAE and BetaVAE scores against ground-truth factors)."""
