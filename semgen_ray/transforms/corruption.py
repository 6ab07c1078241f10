"""The self-restoration corruption of a batch: a policy's operations, sampled then applied (docs/method.md §3).

``make_corruption(preset, backend, **overrides)`` returns a :class:`Corruption`:

* ``f(batch, seed) -> (corrupted, params)`` for a batch (N, C, X, Y, Z) in [0, 1] (C = 1 in the
  reference); ``seed`` an int or N per-sample seeds (:mod:`.seeding`);
* ``f.sample(batch_shape, seed) -> params`` draws (numpy, independent of the back end);
* ``f.apply(batch, params)`` applies them, deterministically (numpy or torch on any device: the same
  parameters give the same output within float tolerance on both);
* ``f.target(batch, params)`` is the restoration target: the original, flipped like the input (Models
  Genesis flips both), optionally also elastically deformed.

Per sample the draws are, in order: flips, elastic coefficients, which corruptions, then each applied
corruption's parameters. In ``one_of`` mode one corruption is drawn with ``r = random()`` and the
cumulative weights (the reference's ``r <= 0.25`` shuffle, ``<= 0.5`` non-linear, ``<= 0.75``
in-painting, else out-painting); in ``chain`` mode shuffle, non-linear and painting are each drawn
with their rates, and painting is in- or out-painting by ``inpaint_rate`` (docs/method.md §3.1).

In a Ray Data pipeline (numpy batches), with a stable sample id per row so that every epoch, worker
and rank draws its own stream::

    f = make_corruption("sg")

    def corrupt(batch, run_seed=0, epoch=0):
        x = batch["cube"][:, None]                      # (N, 1, X, Y, Z) in [0, 1]
        seeds = np.array([sample_seed(run_seed, epoch, int(i)) for i in batch["sample_id"]], np.uint64)
        y, params = f(x, seeds)
        return {**batch, "input": y, "target": f.target(x, params)}

On the training device instead: ``make_corruption("sg", backend="torch")`` and call it on the
batch tensor (CUDA or CPU); parameters are still drawn on the host with numpy (a few hundred numbers
per cube, or 60,000 for ``mg``'s 10,000 shuffle blocks).

2D images (Semantic Genesis 2D; ``spatial_dims=2``): a batch (N, C, X, Y) is corrupted as (N, C, X, Y, 1) cubes by the
same operations and policies, and comes back 2D. An axis of length 1 is not drawn on: boxes, holes,
windows and shuffle blocks span it whole, and the elastic field (which never moves z) displaces x
and y as in 3D. The parameters are those of the (X, Y, 1) cube.
"""

from __future__ import annotations

import numpy as np

from semgen_ray.transforms._backend import backend_for, is_torch
from semgen_ray.transforms._operation import CHUNK_VOXELS, as_float_batch, spatial_shape
from semgen_ray.transforms.elastic_deformation import ElasticDeformation
from semgen_ray.transforms.flip import Flip
from semgen_ray.transforms.in_painting import InPainting
from semgen_ray.transforms.local_pixel_shuffle import LocalPixelShuffle
from semgen_ray.transforms.nonlinear_intensity import NonlinearIntensity
from semgen_ray.transforms.out_painting import OutPainting
from semgen_ray.transforms.params import ORDER, CorruptionParams
from semgen_ray.transforms.policy import CORRUPTIONS, CorruptionPolicy, check_geometry, policy_from_preset
from semgen_ray.transforms.seeding import sample_rng, seed_rows

BACKENDS = ("numpy", "torch")
#: Voxels per group of samples handed to a per-voxel operation by the numpy pipeline.
GROUP_VOXELS = 4 * CHUNK_VOXELS


def operations(policy: CorruptionPolicy) -> dict:
    """The configured operations of a policy, by name."""
    return {
        "flip": Flip(policy.flip_rate, policy.flip_max, policy.flip_axes),
        "elastic_deformation": ElasticDeformation(policy.elastic_alpha, policy.elastic_sigma, policy.elastic_axes),
        "local_pixel_shuffle": LocalPixelShuffle(policy.shuffle_blocks, policy.shuffle_block_size),
        "nonlinear_intensity": NonlinearIntensity(policy.nonlinear_invert_rate),
        "in_painting": InPainting(policy.inpaint_holes, policy.inpaint_hole_rate, policy.inpaint_size,
                                  policy.paint_margin, policy.paint_fill),
        "out_painting": OutPainting(policy.outpaint_windows, policy.outpaint_window_rate, policy.outpaint_shrink,
                                    policy.paint_margin, policy.paint_fill),
    }


class Corruption:
    """A corruption policy bound to a back end (see the module docstring).

    Args:
        policy: the :class:`~semgen_ray.transforms.policy.CorruptionPolicy`.
        backend: ``"numpy"`` (returns numpy arrays) or ``"torch"`` (returns tensors, on the input
            tensor's device, or on ``device`` for numpy input).
        device: torch device for numpy input with the torch back end (default CPU).
        spatial_dims: 3 (batches (N, C, X, Y, Z)) or 2 (batches (N, C, X, Y), corrupted as
            (X, Y, 1) cubes; see the module docstring).

    Example:
        >>> f = make_corruption("sg")
        >>> x = np.random.default_rng(0).random((2, 1, 32, 32, 16), dtype=np.float32)
        >>> y, params = f(x, seed=7)
        >>> y.shape, y.dtype, len(params.names())
        ((2, 1, 32, 32, 16), dtype('float32'), 2)
        >>> bool(np.array_equal(f.apply(x, params), y))
        True
    """

    def __init__(self, policy: CorruptionPolicy, backend: str = "numpy", device=None, spatial_dims: int = 3) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims
        if not isinstance(policy, CorruptionPolicy):
            raise TypeError(f"policy must be a CorruptionPolicy, got {type(policy).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if device is not None and backend != "torch":
            raise ValueError("device is only meaningful with backend='torch'")
        self.policy, self.backend, self.device = policy, backend, device
        self._ops = operations(policy)
        self._cum = np.cumsum(policy.one_of_weights) / sum(policy.one_of_weights)

    def __repr__(self) -> str:
        return f"Corruption(policy={self.policy.name!r}, backend={self.backend!r})"

    # ---- sampling (numpy, back-end independent) ---------------------------------------------------
    def _choose(self, rng: np.random.Generator) -> dict[str, bool]:
        p = self.policy
        if p.mode == "one_of":
            k = min(int(np.searchsorted(self._cum, rng.random(), side="left")), 3)
            return {name: i == k for i, name in enumerate(CORRUPTIONS)}
        shuffle = bool(rng.random() < p.shuffle_rate)
        nonlinear = bool(rng.random() < p.nonlinear_rate)
        inpaint = outpaint = False
        if rng.random() < p.paint_rate:
            inpaint = bool(rng.random() < p.inpaint_rate)
            outpaint = not inpaint
        return dict(zip(CORRUPTIONS, (shuffle, nonlinear, inpaint, outpaint)))

    def _sample_one(self, row, shape) -> tuple[dict[str, bool], dict[str, dict]]:
        rng = sample_rng(row)
        p, ops = self.policy, self._ops
        drawn, applied = {}, {}
        drawn["flip"] = ops["flip"].sample(rng, shape) if p.flip else ops["flip"].empty(shape)
        applied["flip"] = bool(drawn["flip"]["flip"].any())
        applied["elastic_deformation"] = p.elastic
        el = ops["elastic_deformation"]
        drawn["elastic_deformation"] = el.sample(rng, shape) if p.elastic else el.empty(shape)
        for name, on in self._choose(rng).items():
            applied[name] = on
            drawn[name] = ops[name].sample(rng, shape) if on else ops[name].empty(shape)
        return applied, drawn

    def sample(self, batch_shape, seed) -> CorruptionParams:
        """Draw the parameters of a batch (numpy; the same for every back end).

        Args:
            batch_shape: the batch's shape (N, C, X, Y, Z), or the cube's (X, Y, Z) when ``seed``
                holds one seed per sample.
            seed: int, (N,) per-sample seeds or (N, k) seed rows (:mod:`.seeding`).
        """
        batch_shape = tuple(int(s) for s in batch_shape)
        d = self.spatial_dims
        if len(batch_shape) == d and not isinstance(seed, (int, np.integer)):
            batch_shape = (len(np.asarray(seed)), 1, *batch_shape)
        if len(batch_shape) != d + 2:
            axes = "X, Y, Z" if d == 3 else "X, Y"
            raise ValueError(f"batch_shape must be (N, C, {axes}), or ({axes}) with per-sample seeds; got {batch_shape}")
        if d == 2:  # (X, Y, 1) cubes
            batch_shape = (*batch_shape, 1)
        n, shape = batch_shape[0], batch_shape[2:]
        if n == 0:
            raise ValueError("cannot corrupt an empty batch")
        check_geometry(self.policy, shape)
        rows = seed_rows(seed, n)
        samples = [self._sample_one(row, shape) for row in rows]
        applied = {k: np.array([s[0][k] for s in samples], dtype=bool) for k in ORDER}
        ops = {k: {p: np.stack([np.asarray(s[1][k][p]) for s in samples]) for p in samples[0][1][k]}
               for k in ORDER}
        return CorruptionParams(self.policy, shape, rows, applied, ops)

    # ---- application (numpy or torch) ---------------------------------------------------------------
    def _prepare(self, batch):
        if self.backend == "torch":
            import torch

            if not isinstance(batch, torch.Tensor):
                batch = torch.from_numpy(np.ascontiguousarray(batch))
                if self.device is not None:
                    batch = batch.to(self.device)
            else:
                batch = batch.detach()
                if self.device is not None and batch.device != torch.device(self.device):
                    batch = batch.to(self.device)
        elif is_torch(batch):
            raise TypeError("this corruption has backend='numpy'; pass a numpy array "
                            "(or make one with backend='torch')")
        else:
            batch = np.asarray(batch)
        if self.spatial_dims == 2:  # a 2D batch (N, C, X, Y): corrupted as (X, Y, 1) cubes
            if len(batch.shape) != 4:
                raise ValueError(f"a 2D batch must be (N, C, X, Y), got shape {tuple(batch.shape)}")
            batch = batch[..., None]
        spatial_shape(batch)
        return as_float_batch(batch)

    def _as_given(self, out):
        """``out`` in the batch's own rank (a 2D batch back without its z)."""
        return out[..., 0] if self.spatial_dims == 2 else out

    def _run(self, x, params: CorruptionParams, names):
        """Apply ``names`` in order to ``x`` (float32, owned: overwritten); each operation only on the
        samples it was drawn for.

        numpy: per-voxel operations run on groups of about ``GROUP_VOXELS`` voxels (four 64×64×32
        cubes; their kernels work in cache-sized chunks inside), so temporaries are recycled by the
        allocator (fresh multi-megabyte arrays cost page faults); the shuffle, whose per-shape loop
        amortises over the batch, gets all its samples at once.
        """
        if int(x.shape[0]) != len(params) or tuple(int(s) for s in x.shape[2:]) != tuple(params.shape):
            raise ValueError(f"params are for {len(params)} cubes of {params.shape}; the batch is {tuple(x.shape)}")
        ops = self._ops if params.policy == self.policy else operations(params.policy)
        xp = backend_for(x)
        nvox = int(np.prod(params.shape))
        for name in names:
            mask = params.applied[name]
            if not mask.any():
                continue
            op, drawn = ops[name], params.ops[name]
            op.check(x, drawn)
            sel = np.flatnonzero(mask)
            step = sel.size if xp.name != "numpy" or op.whole_batch else max(1, GROUP_VOXELS // nvox)
            for i in range(0, sel.size, step):
                group = sel[i:i + step]
                sub = {k: v[group] for k, v in drawn.items()}
                first, last = int(group[0]), int(group[-1]) + 1
                if last - first == group.size:            # a run of samples: work on a view
                    view = x[first:last]
                    out = op._apply(view, sub)
                    if out is not view:
                        x[first:last] = out
                else:
                    idx = xp.param(group)
                    x[idx] = op._apply(x[idx], sub)
        return x

    def apply(self, batch, params: CorruptionParams):
        """Apply recorded parameters to a batch; float32, same back end as this corruption."""
        return self._as_given(self._run(self._prepare(batch), params, ORDER))

    def target(self, batch, params: CorruptionParams, deformed: bool = False):
        """The restoration target: the original batch with the input's flips (and, with ``deformed``,
        its elastic deformation; the reference target is the un-deformed cube)."""
        names = ("flip", "elastic_deformation") if deformed else ("flip",)
        return self._as_given(self._run(self._prepare(batch), params, names))

    def __call__(self, batch, seed):
        """Corrupt a batch: ``(corrupted, params)`` (:meth:`sample` then :meth:`apply`)."""
        x = self._prepare(batch)
        params = self.sample(tuple(x.shape)[:2 + self.spatial_dims], seed)
        return self._as_given(self._run(x, params, ORDER)), params


def make_corruption(preset: str | CorruptionPolicy = "sg", backend: str = "numpy", device=None,
                    spatial_dims: int = 3, **overrides) -> Corruption:
    """The corruption of a preset (``"sg"`` default, ``"mg"``, ``"sg_keras"``) with overrides.

    Args:
        preset: preset name or a :class:`CorruptionPolicy`.
        backend: ``"numpy"`` or ``"torch"``.
        device: torch device for numpy input (torch back end only).
        spatial_dims: 3, or 2 for 2D images (N, C, X, Y).
        **overrides: :class:`CorruptionPolicy` fields, e.g. ``shuffle_blocks=100``.

    Raises:
        PolicyError: unknown preset or field, or invalid value.
    """
    return Corruption(policy_from_preset(preset, **overrides), backend=backend, device=device,
                      spatial_dims=spatial_dims)


__all__ = ["BACKENDS", "Corruption", "make_corruption", "operations"]
