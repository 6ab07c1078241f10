"""What every corruption operation shares: per-sample sampling, stacking, batch checks.

An operation (``Flip``, ``ElasticDeformation``, ``LocalPixelShuffle``, ``NonlinearIntensity``,
``InPainting``, ``OutPainting``) has

* ``sample(rng, shape) -> dict`` — draws one sample's parameters from its own generator (numpy);
* ``empty(shape) -> dict`` — the parameters of a sample it is not applied to (same keys and shapes);
* ``apply(batch, params) -> batch`` — deterministic, batched, for numpy arrays or torch tensors
  (any device), with ``params`` the per-sample dicts stacked along a leading axis (:func:`stack`);
  it validates, copies the batch to float32 and calls ``_apply(x, params)``, which may overwrite
  ``x`` (the pipeline in :mod:`.corruption` calls ``_apply`` on buffers it owns);
* ``__call__(batch, seed) -> (out, params)`` — both, for a whole batch (:mod:`.seeding`).
"""

from __future__ import annotations

import abc
from functools import lru_cache

import numpy as np

from semgen_ray.transforms._backend import backend_for, is_torch
from semgen_ray.transforms.seeding import sample_rng, seed_rows


def stack(samples: list[dict]) -> dict[str, np.ndarray]:
    """Per-sample parameter dicts → one dict of arrays with a leading sample axis."""
    if not samples:
        raise ValueError("cannot stack the parameters of zero samples")
    return {k: np.stack([np.asarray(s[k]) for s in samples]) for k in samples[0]}


def spatial_shape(batch) -> tuple[int, int, int]:
    """``(X, Y, Z)`` of a batch ``(N, C, X, Y, Z)``; raises ``ValueError`` for other ranks."""
    shape = tuple(int(s) for s in batch.shape)
    if len(shape) != 5:
        raise ValueError(f"a batch must be (N, C, X, Y, Z), got shape {shape}")
    return shape[2:]


#: Voxels per chunk of the numpy per-voxel kernels. Temporaries of one 64×64×32 cube (0.5-1 MiB)
#: stay in the CPU's L2 cache and are recycled by the allocator; whole-batch temporaries are not
#: (fresh multi-megabyte arrays cost page faults), and the elastic kernel ran 1.7× slower per cube
#: with them on the 2-core development machine (chunks of 2^15, 2^16, 2^17, 2^18 voxels and the whole
#: 32-cube batch: 4.5, 3.5, 3.1, 3.1, 5.2 ms per cube).
CHUNK_VOXELS = 1 << 17


def chunks(n: int, nvox: int, budget: int = CHUNK_VOXELS) -> list[slice]:
    """Consecutive sample slices of about ``budget`` voxels each (at least one sample each)."""
    step = max(1, budget // max(1, nvox))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


@lru_cache(maxsize=1)
def compiled_kernels():
    """The compiled loops of the numpy back end (:mod:`._compiled`), or ``None`` where numba is not
    installed; the callers then run their vectorised numpy code (the same output)."""
    try:
        from semgen_ray.transforms import _compiled
    except ImportError:
        return None
    return _compiled


class Scratch:
    """Named work arrays that the chunks of one call share (numpy kernels).

    Even chunk-sized temporaries are not reliably recycled: glibc returns freed memory at the top of
    its heap to the system, and the next chunk's arrays fault their pages in again. That cost the 2D
    elastic kernel about a third of its time (224 × 224 images, 2 per chunk). A buffer taken from
    here is allocated once per call and only ever grows.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape, dtype=np.float32) -> np.ndarray:
        """An uninitialised C-contiguous ``shape`` array of ``dtype``, the same memory on every call."""
        size, dtype = int(np.prod(shape)), np.dtype(dtype)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(size, dtype)
        return buf[:size].reshape(shape)


def as_float_batch(batch):
    """The batch as float32 (numpy array or torch tensor, same device), never the caller's buffer."""
    if is_torch(batch):
        import torch

        return batch.to(torch.float32, copy=True)
    return np.array(batch, dtype=np.float32, copy=True)


class RandomOperation(abc.ABC):
    """Base of the corruption operations (see the module docstring)."""

    name = "operation"
    #: True when ``_apply`` should get all its samples at once (per-call overhead), False for
    #: per-voxel work that the numpy pipeline feeds in cache-sized groups.
    whole_batch = False

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, shape: tuple[int, int, int]) -> dict:
        """Draw one sample's parameters for a cube of ``shape`` from ``rng``."""

    @abc.abstractmethod
    def empty(self, shape: tuple[int, int, int]) -> dict:
        """The parameters of a sample this operation leaves unchanged."""

    def check(self, batch, params: dict) -> None:
        """Raise ``ValueError`` when ``params`` do not fit ``batch`` (N, C, X, Y, Z)."""
        spatial_shape(batch)
        for name, value in params.items():
            if np.asarray(value).shape[:1] != (batch.shape[0],):
                raise ValueError(f"{self.name}: parameter {name!r} has shape {np.asarray(value).shape}; "
                                 f"need a leading axis of {batch.shape[0]} samples")

    @abc.abstractmethod
    def _apply(self, x, params: dict):
        """Apply validated stacked parameters to the float32 batch ``x`` (same back end)."""

    def apply(self, batch, params: dict):
        """Apply stacked parameters to a batch (N, C, X, Y, Z); returns a float32 copy (same back end)."""
        self.check(batch, params)
        return self._apply(as_float_batch(batch), params)

    def sample_batch(self, shape, seed) -> dict[str, np.ndarray]:
        """Stacked parameters for a batch of ``shape`` (N, C, X, Y, Z), from ``seed`` (:mod:`.seeding`)."""
        n, spatial = int(shape[0]), tuple(int(s) for s in shape[2:])
        return stack([self.sample(sample_rng(row), spatial) for row in seed_rows(seed, n)])

    def __call__(self, batch, seed):
        """Draw parameters for every sample of ``batch`` and apply them; returns ``(out, params)``."""
        spatial_shape(batch)
        params = self.sample_batch(tuple(batch.shape), seed)
        return self.apply(batch, params), params

    @staticmethod
    def _xp(batch):
        return backend_for(batch)
