"""The encoder/decoder pairs of the flat models, one module per architecture (``mlp``, ``conv``, ``residual``), each
with the ``build`` its catalog entry names (config/architectures.py). One contract for every architecture:

- an encoder maps images ``[B, C, H, W]`` (and, for a CVAE, a condition ``c`` ``[B, cond_dim]``: the one-hot
  label) to ``(mu, logvar)``, each ``[B, latent_dim]``;
- a decoder maps ``z`` ``[B, latent_dim]`` (and ``c``) to the likelihood's parameters: ``[B, P, H, W]`` with P the
  likelihood's ``param_channels`` (C for a Bernoulli, 2C for a Gaussian with per-pixel σ, 10K for K coupled RGB
  logistics).

The condition is concatenated where the representation is a flat vector: the input of an MLP encoder, the head of a
conv encoder (after the convolutions), and ``z`` for every decoder.
"""
