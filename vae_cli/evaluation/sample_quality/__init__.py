"""Sample quality: FID, KID and precision/recall of generated images against real ones, in the feature space of one
feature network (``features``: Inception-v3 from local weights, or a classifier vae-cli trains itself per dataset).

``metrics`` holds the estimators (on feature matrices), ``suite`` scores a set of generated images against a split.
Numbers from different feature networks measure different things and are never compared: every output names its
network (docs/evaluate.md)."""
