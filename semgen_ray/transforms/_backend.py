"""The few array primitives the corruptions need, for numpy and for torch (any device).

Every operation's deterministic ``apply`` is written once against this shim, so both back ends run
the same arithmetic: the numpy back end serves Ray Data ``map_batches`` on CPU workers, the torch back
end corrupts on the training device. Parameters always arrive as numpy arrays (they are drawn with
numpy, docs/method.md §3); :meth:`param` moves them to the batch's device.

Random *values* that are too many to store as parameters (the noise fill of in-/out-painting, the
random keys that order the voxels of each shuffled block) come from a counter-based hash: value =
``lowbias32(counter * φ + key)`` on int32 with wrap-around, where ``key`` is a per-sample parameter and
``counter`` a per-sample voxel/entry number. The hash uses only multiply, xor, shift and mask, so numpy
and torch (CPU or GPU) give bit-identical results, and a sample's values never depend on the other
samples in its batch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import numpy as np

#: Multipliers of Chris Wellons' "lowbias32" integer hash, as int32 bit patterns.
_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)
#: 2^32 / golden ratio (int32 bit pattern): spreads consecutive counters before hashing.
_PHI = 0x9E3779B9 - (1 << 32)


def is_torch(x) -> bool:
    """True for a ``torch.Tensor`` (without importing torch when it is not loaded)."""
    return type(x).__module__.startswith("torch")


def backend_for(x) -> NumpyBackend | TorchBackend:
    """The back end matching an array: numpy for ``np.ndarray``, torch (on its device) for a tensor."""
    if is_torch(x):
        return TorchBackend(x.device)
    return NUMPY


class NumpyBackend:
    """Array primitives on numpy (CPU)."""

    name = "numpy"
    int32, int64, float32, float64, bool_, int8 = np.int32, np.int64, np.float32, np.float64, np.bool_, np.int8

    def param(self, a, dtype=None):
        return np.asarray(a, dtype=dtype)

    def arange(self, n, dtype):
        return np.arange(n, dtype=dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def astype(self, a, dtype):
        return a.astype(dtype, copy=False)

    def copy(self, a):
        return a.copy()

    def clip(self, a, lo, hi):
        return np.clip(a, lo, hi)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def nonzero(self, mask):
        return np.flatnonzero(mask)

    def cummax(self, a):
        return np.maximum.accumulate(a, axis=-1)

    def sort_rows(self, a):
        return np.sort(a, axis=-1)

    def matmul(self, a, b, out=None):
        return np.matmul(a, b, out=out)

    def flip(self, a, axis):
        return np.flip(a, axis)

    def scatter_max_(self, target, index, values):
        """``target[index] = max(target[index], values)`` with repeated indices (in place)."""
        np.maximum.at(target, index, values)
        return target

    def count_le(self, sorted_rows, values):
        """``searchsorted(row, values, side="right")`` for every ascending row: (N, K), (L,) → (N, L).

        Exact and per row (no float shifts that would tie a row's result to its place in the batch):
        each row entry is located among the sorted ``values`` once, then counted.
        """
        n = sorted_rows.shape[0]
        size = values.shape[0]
        where = np.searchsorted(values, sorted_rows, side="left")            # first value >= entry
        where += (np.arange(n, dtype=np.int64) * (size + 1)).reshape(n, 1)
        counts = np.bincount(where.reshape(-1), minlength=n * (size + 1)).reshape(n, size + 1)
        return np.cumsum(counts, axis=1)[:, :size]

    def take_rows(self, rows, index):
        """``rows[n, index[n, j]]``: (N, K), (N, L) → (N, L)."""
        n, k = rows.shape
        flat = index + (np.arange(n, dtype=np.int64) * k).reshape(n, 1)
        return np.take(rows.reshape(-1), flat)


class TorchBackend:
    """Array primitives on torch, on ``device`` (CPU or GPU)."""

    name = "torch"

    def __init__(self, device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.int32, self.int64, self.float32, self.float64, self.bool_, self.int8 = (
            torch.int32, torch.int64, torch.float32, torch.float64, torch.bool, torch.int8)

    _NP: ClassVar[dict] = {np.dtype(np.int32): "int32", np.dtype(np.int64): "int64", np.dtype(np.float32): "float32",
           np.dtype(np.float64): "float64", np.dtype(np.bool_): "bool_", np.dtype(np.int16): "int64",
           np.dtype(np.int8): "int8", np.dtype(np.uint64): "int64"}

    def _dtype(self, dtype):
        if dtype is None or not isinstance(dtype, (type, np.dtype)):
            return dtype
        return getattr(self, self._NP[np.dtype(dtype)])

    def param(self, a, dtype=None):
        torch = self.torch
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self._dtype(dtype) if dtype is not None else a.dtype)
        arr = np.asarray(a)
        if dtype is None and arr.dtype.kind in "iu" and arr.dtype != np.int32:
            arr = arr.astype(np.int64)  # torch indexes with int64
        elif dtype is not None and not isinstance(dtype, torch.dtype):
            arr = arr.astype(dtype)
        if not arr.flags.writeable:
            arr = arr.copy()  # torch.from_numpy wants a writable buffer (cached tables are read-only)
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t.to(device=self.device, dtype=dtype if isinstance(dtype, torch.dtype) else None)

    def arange(self, n, dtype):
        return self.torch.arange(n, dtype=self._dtype(dtype), device=self.device)

    def full(self, shape, value, dtype):
        return self.torch.full(tuple(shape), value, dtype=self._dtype(dtype), device=self.device)

    def astype(self, a, dtype):
        return a.to(self._dtype(dtype))

    def copy(self, a):
        return a.clone()

    def clip(self, a, lo, hi):
        return self.torch.clamp(a, lo, hi)

    def minimum(self, a, b):
        if not isinstance(b, self.torch.Tensor):
            return self.torch.clamp(a, max=b)
        return self.torch.minimum(a, b)

    def maximum(self, a, b):
        if not isinstance(b, self.torch.Tensor):
            return self.torch.clamp(a, min=b)
        return self.torch.maximum(a, b)

    def where(self, cond, a, b):
        return self.torch.where(cond, a, b)

    def nonzero(self, mask):
        return self.torch.nonzero(mask.reshape(-1), as_tuple=True)[0]

    def cummax(self, a):
        return self.torch.cummax(a, dim=-1).values

    def sort_rows(self, a):
        return self.torch.sort(a, dim=-1).values

    def matmul(self, a, b, out=None):
        return self.torch.matmul(a, b, out=out)

    def flip(self, a, axis):
        return self.torch.flip(a, (axis,))

    def scatter_max_(self, target, index, values):
        return target.scatter_reduce_(0, index, values, reduce="amax")

    def count_le(self, sorted_rows, values):
        n = sorted_rows.shape[0]
        return self.torch.searchsorted(sorted_rows.contiguous(), values.reshape(1, -1).expand(n, -1).contiguous(),
                                       right=True)

    def take_rows(self, rows, index):
        return self.torch.gather(rows, 1, index)


NUMPY = NumpyBackend()


def lowbias32(x):
    """Integer hash of int32 values (numpy or torch), bit-identical on both; wraps mod 2^32."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _M1
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _M2
    return x ^ ((x >> 16) & 0xFFFF)


def _lowbias32_numpy_(x: np.ndarray) -> np.ndarray:
    """:func:`lowbias32` in place on a uint32 view (logical shifts need no masks): fewer passes."""
    t = x >> 16
    x ^= t
    x *= np.uint32(_M1)
    np.right_shift(x, 15, out=t)
    x ^= t
    x *= np.uint32(_M2 & 0xFFFFFFFF)
    np.right_shift(x, 16, out=t)
    x ^= t
    return x


def hash_bits(xp, counter, key):
    """32 random bits (int32) per ``counter`` (int32 or int64, any shape), keyed by int32 ``key``.

    ``key`` broadcasts against ``counter`` (one key per sample: shape (N, 1, ...)).
    """
    if xp.name == "numpy":
        x = np.asarray(counter).astype(np.uint32)            # wraps like the int32 arithmetic
        x *= np.uint32(_PHI & 0xFFFFFFFF)
        x = np.add(x, np.asarray(key).astype(np.int32).view(np.uint32), dtype=np.uint32)
        return _lowbias32_numpy_(x).view(np.int32)
    c = xp.astype(counter, xp.int32) if counter.dtype != xp.int32 else counter
    return lowbias32(c * _PHI + key)


def hash_bits_split(xp, block_counter, key, pos):
    """``hash_bits(block_counter + pos, key)`` for a (B, 1) block part and a (1, P) position part.

    The per-block and per-position halves of the hash input are formed on the small arrays, so the
    (B, P) result costs one broadcast add plus the hash rounds.
    """
    if xp.name == "numpy":
        head = np.asarray(block_counter).astype(np.uint32) * np.uint32(_PHI & 0xFFFFFFFF)
        head += np.asarray(key).astype(np.int32).view(np.uint32)
        tail = np.asarray(pos).astype(np.uint32) * np.uint32(_PHI & 0xFFFFFFFF)
        return _lowbias32_numpy_(head + tail).view(np.int32)
    return hash_bits(xp, block_counter + pos, key)


@lru_cache(maxsize=8)
def _voxel_counter(n: int) -> np.ndarray:
    out = np.arange(n, dtype=np.int32).reshape(1, n)
    out.setflags(write=False)
    return out


def voxel_counter(n: int) -> np.ndarray:
    """``arange(n)`` as a (1, n) int32 row (cached, read-only): the counters of a sample's voxels."""
    return _voxel_counter(int(n))


def uniform(xp, counter, key):
    """U[0, 1) float32 values with 24 random bits each (exact in float32), one per ``counter``."""
    if xp.name == "numpy":
        bits = hash_bits(xp, counter, key).view(np.uint32)
        bits >>= 8
        out = bits.astype(np.float32)
        out *= np.float32(2.0 ** -24)
        return out
    bits = (hash_bits(xp, counter, key) >> 8) & 0xFFFFFF
    return xp.astype(bits, xp.float32) * np.float32(2.0 ** -24)
