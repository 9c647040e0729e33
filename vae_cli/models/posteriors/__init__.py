"""Posteriors q(z|x): one module each (gaussian, planar, radial, iaf, vmf, wrapped_normal), built through the
``POSTERIORS`` catalog (config/posteriors.py); ``base`` holds the contract and ``flow`` what the flows share."""
