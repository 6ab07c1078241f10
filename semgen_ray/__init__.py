"""semgen_ray: Semantic Genesis self-supervised pretraining for 3D medical images on Ray.

Heavy dependencies (ray, torch, zarr, SimpleITK) are imported lazily by the sub-packages that need
them, so ``import semgen_ray`` is cheap.
"""

__version__ = "0.1.0"

# Canonical array layout of the whole system (README, "Volume store"): axes (x, y, z) in the DICOM /
# ITK patient frame LPS, i.e. x grows towards the patient's Left, y towards Posterior, z towards
# Superior. A volume's ``direction`` records any residual obliquity.
AXIS_ORDER = ("x", "y", "z")
ORIENTATION = "LPS"
