"""Disentanglement metrics against ground-truth factors (``vae_cli.factors``), as disentanglement_lib defines them.

One module per metric (``mig``, ``dci``, ``sap``, ``factor_vae_score``, ``beta_vae_score``), ``information``
(histogram discretization, discrete entropy and mutual information), ``sampling`` (codes of observations drawn
from the ground truth), ``representation`` (a trained model's encoder mean as the representation) and ``suite``
(every metric with the sizes and seed of a ``disentanglement`` config). docs/disentanglement.md says how each is
computed and where other implementations differ.
"""
