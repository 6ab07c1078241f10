"""Self-restoration corruptions of Semantic Genesis / Models Genesis (docs/method.md §3), numpy and torch.

Entry point: :func:`make_corruption` ``(preset="sg", backend="numpy", **overrides)`` returns a
:class:`Corruption` ``f``; ``f(batch, seed) -> (corrupted, params)`` for a batch (N, 1, X, Y, Z) in
[0, 1]. Parameters are drawn with numpy from per-sample seeds (``seed`` an int: sample i uses
``SeedSequence([seed, i])``; or N per-sample seeds, e.g. :func:`sample_seed` of (run seed, epoch,
sample id)), recorded in a :class:`CorruptionParams`, and applied deterministically by either back
end: ``numpy`` (CPU, Ray Data ``map_batches``) or ``torch`` (CPU or GPU, batched). ``f.sample`` /
``f.apply`` split the two steps; ``f.target`` gives the restoration target (flipped like the input).

Presets (:data:`PRESETS`, :class:`CorruptionPolicy`): ``sg`` (default; docs/method.md §3.2), ``mg`` (§3.1),
``sg_keras`` (§3.3). The operations, one module each: :class:`Flip`, :class:`ElasticDeformation`,
:class:`LocalPixelShuffle`, :class:`NonlinearIntensity`, :class:`InPainting`, :class:`OutPainting`.

``import semgen_ray.transforms`` loads numpy only; scipy (elastic basis) and torch (torch back end)
are imported when first needed.

Example:
    >>> import numpy as np
    >>> from semgen_ray.transforms import make_corruption, sample_seed
    >>> f = make_corruption("mg")
    >>> x = np.random.default_rng(0).random((4, 1, 32, 32, 16), dtype=np.float32)
    >>> seeds = [sample_seed(run_seed=0, epoch=3, sample_id=i) for i in (10, 11, 12, 13)]
    >>> y, params = f(x, np.array(seeds, dtype=np.uint64))
    >>> target = f.target(x, params)   # the original, flipped like the input
"""

from semgen_ray.transforms.corruption import BACKENDS, Corruption, make_corruption, operations
from semgen_ray.transforms.elastic_deformation import ElasticDeformation
from semgen_ray.transforms.flip import Flip
from semgen_ray.transforms.in_painting import InPainting
from semgen_ray.transforms.local_pixel_shuffle import LocalPixelShuffle
from semgen_ray.transforms.nonlinear_intensity import NonlinearIntensity
from semgen_ray.transforms.out_painting import OutPainting
from semgen_ray.transforms.params import ORDER, CorruptionParams
from semgen_ray.transforms.policy import (
    CORRUPTIONS,
    PRESETS,
    CorruptionPolicy,
    PolicyError,
    policy_from_preset,
)
from semgen_ray.transforms.seeding import sample_seed

__all__ = [
    "BACKENDS",
    "CORRUPTIONS",
    "ORDER",
    "PRESETS",
    "Corruption",
    "CorruptionParams",
    "CorruptionPolicy",
    "ElasticDeformation",
    "Flip",
    "InPainting",
    "LocalPixelShuffle",
    "NonlinearIntensity",
    "OutPainting",
    "PolicyError",
    "make_corruption",
    "operations",
    "policy_from_preset",
    "sample_seed",
]
