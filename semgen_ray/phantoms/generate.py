"""One phantom patient as the pipeline sees it: a CT `Volume`, its nodule labels and their list."""

from __future__ import annotations

import numpy as np

from semgen_ray.io.volume import Volume
from semgen_ray.phantoms.anatomy import sample_params
from semgen_ray.phantoms.grid import Grid, default_spacing
from semgen_ray.phantoms.render import render_detailed

DEFAULT_SHAPE = (256, 256, 128)


def generate_patient(index: int, cohort_seed: int = 0, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                     spacing: tuple[float, float, float] | None = None) -> tuple[Volume, np.ndarray, dict]:
    """Generate patient ``index`` of the synthetic chest-CT cohort ``cohort_seed``.

    Args:
        index: patient number (>= 0); the same (cohort_seed, index) always gives the same patient.
        cohort_seed: seed of the cohort (>= 0).
        shape: grid shape (x, y, z); the anatomy is defined in mm, so any shape works.
        spacing: voxel size (mm); by default ``360/X, 360/Y, 320/Z`` (a 360×360×320 mm field of view,
            1.406×1.406×2.5 mm at the default shape).

    Returns:
        ``(volume, label, nodules)``:
        - ``volume``: modality "CT", int16 HU array (X, Y, Z) in LPS order (x → patient Left,
          y → Posterior, z → Superior), centred on the isocentre, ``source`` ``phantom://seed{s}/{i}``,
          ``extra`` (JSON-serialisable) = ``{"phantom": PatientParams.to_dict(), "habitus": cluster id,
          "habitus_name", "cohort_seed", "index"}``; ``PatientParams.from_dict(extra["phantom"])``
          rebuilds the parameters.
        - ``label``: uint8 (X, Y, Z), 0 background, nodule ``k`` (1-based, in the order of
          ``nodules["nodules"]``) has value ``k``.
        - ``nodules``: ``{"count", "label_kind": "instance", "nodules": [...]}``; each nodule has
          ``id``, ``kind`` (solid / part-solid / ground-glass), ``diameter_mm`` (nominal),
          ``center_mm`` (world), ``center_voxel``, ``n_voxels``, ``volume_mm3`` and ``mean_hu``
          (measured in the rendered image; None when the nodule has no voxel).

    Example:
        >>> vol, label, nodules = generate_patient(0, shape=(64, 64, 32))
        >>> str(vol.array.dtype), vol.shape, int(label.max()) == nodules["count"]
        ('int16', (64, 64, 32), True)
    """
    if index < 0 or cohort_seed < 0:
        raise ValueError(f"index and cohort_seed must be >= 0, got {index}, {cohort_seed}")
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in (default_spacing(shape) if spacing is None else spacing))
    params = sample_params(cohort_seed, index)
    out = render_detailed(params, shape, spacing)
    grid = Grid(shape, spacing)
    volume = Volume(
        array=out.hu,
        spacing=spacing,
        origin=grid.origin,
        modality="CT",
        source=f"phantom://seed{cohort_seed}/{index}",
        extra={"phantom": params.to_dict(), "habitus": params.habitus, "habitus_name": params.habitus_name,
               "cohort_seed": int(cohort_seed), "index": int(index)},
    )
    nodules = {"count": len(out.nodules), "label_kind": "instance", "nodules": out.nodules}
    return volume, out.label, nodules
