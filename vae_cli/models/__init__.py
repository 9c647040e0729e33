"""The models and their parts: ``protocol`` (what any model answers: ``Model``, ``VAEOutput``), ``build``
(a model from a config, through the catalogs), ``vae`` (the flat composition: encoder, prior, decoder, likelihood),
``networks/`` (the flat architectures' encoder/decoder pairs), ``priors``, ``likelihoods/``, ``hierarchical``
(top-down layers), ``vqvae`` + ``quantizer`` + ``pixelcnn`` (the code-grid model and its priors over codes)."""
