"""Likelihoods p(x|z), one module each, with the ``build`` its catalog entry names (config/likelihoods.py).

The contract (``base``): ``log_prob(x, params)`` per image, ``mean(params)`` (the image shown for reconstructions
and samples) and ``sample(params)``. The decoder's output is ``params``: ``param_channels(C)`` channels per pixel of a
C-channel image (C for Bernoulli and fixed-σ Gaussians; 2C for a per-pixel σ; 10K for K coupled RGB logistics).

Every likelihood says what its ``-log p(x|z)`` measures (``measures``), which decides what bits/dim means:

- ``probability``: a probability of the data's discrete values (Bernoulli on binarized pixels, the discretized
  logistic mixture on 256 levels): bits/dim = nll / (D ln 2);
- ``density``: a density on [0, 1]-scaled pixels (Gaussian, continuous Bernoulli): bits/dim on the 8-bit scale is
  nll / (D ln 2) + 8 (Theis et al., 2016: an upper bound on the discrete data's bits/dim when trained and
  evaluated on uniformly dequantized pixels);
- ``cross_entropy``: Bernoulli on grey levels, the classic VAE: not a normalized likelihood of anything.

Sums over pixels are taken in float32 even under autocast: 784+ pixels lose too much in half precision.
"""
