"""Ground-truth factors: datasets whose generative factors are known, behind one small interface.

``ground_truth`` (the interface the disentanglement metrics use: sample factors, the images of given factors,
factors that share one factor with given ones), ``shapes2d`` (dSprites' grid rendered with numpy), ``xyobject``
(coloured squares), ``dsprites`` (the official .npz), ``table`` (any images with a factor table, e.g. an image
folder with a factors CSV) and ``from_config`` (the ground truth of a run's ``dataset`` config).
"""

from vae_cli.factors.ground_truth import FactorData, FactorGrid, ImageGrid

__all__ = ["FactorData", "FactorGrid", "ImageGrid"]
