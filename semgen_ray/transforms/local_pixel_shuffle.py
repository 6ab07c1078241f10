"""Local pixel shuffling (Models Genesis / Semantic Genesis, docs/method.md §3.1 step 2, §3.2).

Reference: for each of B blocks (10,000 Models Genesis, 5 Semantic Genesis), in order: side
U{1..D/10} per axis, corner U{0..D−side}; the block's voxels are read from the *unmodified* input,
permuted uniformly at random and written to the output. Blocks overlap; a later block overwrites an
earlier one. The reference does this in a Python loop (about 80 ms per 64×64×32 cube for 10,000
blocks, ``benchmarks/corruptions.py``).

Here the whole batch is resolved with array operations, blocks grouped by shape (at most
6 × 6 × 3 = 108 shapes for 64×64×32; a loop over shapes, never over blocks, samples or voxels):

1. every block of a shape expands to its voxels by adding the shape's offset template to its corner;
2. each block's permutation orders random keys of its voxels (one row-wise sort per shape): output
   position ``l`` of a block takes the voxel whose key has rank ``l``;
3. "last block wins, voxels taken from the original": every block voxel proposes the code
   ``(block number << bits) | source voxel`` and a scatter-max keeps, for each voxel, the code of the
   last block covering it (blocks are numbered in drawing order); voxels no block covers keep their
   own index (a code below every block's);
4. one gather of the original applies everything.

With numba installed (a dependency), the numpy back end instead places the (visible) blocks in
drawing order with compiled loops, each block's permutation computed as in step 2
(:func:`_shuffle_compiled`, :mod:`._compiled`): the same result, 1.6× faster on ``mg``'s 2D shuffle.

When the blocks cover the batch many times over (``mg``'s 10,000 blocks on a 224 × 224 image: 26
times), a first scatter-max of block numbers finds the blocks some voxel shows, and steps 1-3 run on
those only (12 % of the blocks there): the others would lose every voxel to later blocks anyway.

The random keys are 32-bit hashes of (per-sample key, block number, position in block)
(:mod:`._backend`), so the same parameters give the same permutation on numpy and torch, and a
sample's result never depends on the rest of the batch. Keys keep 32 − ``ceil(log2(volume))``
random bits (25 for 108-voxel blocks); ties (probability ~1e-5 per block for the largest blocks)
fall back to C order. ``tests/transforms/test_transforms_local_pixel_shuffle.py`` checks the result
against the reference loop with the same permutations, and that the 24 orders of a 4-voxel block are
equally likely.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from semgen_ray.transforms._backend import NUMPY, hash_bits_split
from semgen_ray.transforms._boxes import flat_axes
from semgen_ray.transforms._operation import RandomOperation, chunks, compiled_kernels
from semgen_ray.transforms.policy import resolve_range

#: On CPU tensors the torch back end computes the (integer, identical) source index with the numpy
#: kernel: torch's CPU sorts are 10-40× slower than numpy's. Tests switch it off to exercise the
#: device code path on CPU.
TORCH_CPU_USES_NUMPY = True


def _local_bits(max_volume: int) -> int:
    return max(1, int(max_volume - 1).bit_length())


def _source_index(boxes: np.ndarray, keys: np.ndarray, shape, xp):
    """See :meth:`LocalPixelShuffle.source_index`; ``boxes`` (N, B, 6), ``keys`` (N,) int32.

    Every block voxel proposes a code ``(block << bits) | source`` and the largest code per voxel
    wins, i.e. the last block covering it. torch: one int64 code array for the batch, codes
    ``(block in batch << 32) | source in batch``; returns the source index (N·V,). numpy: returns
    the per-shape proposals for :func:`_scatter_numpy`, which scatters one cache-sized group of samples
    at a time, with int32 codes ``(block in sample << vbits) | source in sample`` when they fit.
    """
    n, b = boxes.shape[:2]
    X, Y, Z = shape
    nvox = X * Y * Z
    if n * nvox >= 1 << 32 or n * b >= 1 << 31:
        raise ValueError(f"batch too large for one shuffle ({n} cubes of {nvox} voxels, {n * b} blocks); "
                         "corrupt it in smaller batches")
    vbits = max(1, (nvox - 1).bit_length())
    compact = xp.name == "numpy" and b <= 1 << (31 - vbits)
    code = xp.param(_identity_code(n * nvox)) if xp.name != "numpy" else None
    flat_boxes, (sx, sy, sz), used, dense = _blocks(boxes, nvox)
    if used.size == 0:
        return code & 0xFFFFFFFF if xp.name != "numpy" else _Proposals([], compact, vbits)
    local = (flat_boxes[:, 0].astype(np.int64) * Y + flat_boxes[:, 1]) * Z + flat_boxes[:, 2]
    base = local + np.repeat(np.arange(n, dtype=np.int64) * nvox, b)      # first voxel, in the batch
    if dense:
        used = _visible(used, base, sx, sy, sz, n * nvox, Y, Z)
    number = np.tile(np.arange(b, dtype=np.int64), n)                       # block number in its sample
    if compact:
        head = ((number << vbits) + local).astype(np.int32)
    else:
        head = (np.arange(n * b, dtype=np.int64) << 32) + base
    pending = []
    for blocks, (bx, by, bz) in _shape_groups(used, sx, sy, sz):
        offset = _template(bx, by, bz, Y, Z)                             # (volume,) C order
        volume = offset.size
        vox = xp.param(base[blocks]).reshape(-1, 1) + xp.param(offset).reshape(1, -1)   # (blocks, volume)
        table = xp.param(offset.astype(np.int32) if compact else offset)
        if volume == 1:
            proposal = xp.param(head[blocks]).reshape(-1, 1)
        else:
            proposal = table[_ranks(xp, blocks, keys, b, volume)]
            proposal += xp.param(head[blocks]).reshape(-1, 1)
        if xp.name != "numpy":
            xp.scatter_max_(code, vox.reshape(-1), proposal.reshape(-1))
        else:
            bounds = np.searchsorted(blocks, np.arange(n + 1, dtype=np.int64) * b)
            pending.append((vox, proposal, bounds))
    if xp.name != "numpy":
        return code & 0xFFFFFFFF
    return _Proposals(pending, compact, vbits)


def _blocks(boxes: np.ndarray, nvox: int):
    """``(flat boxes (N·B, 6), (sx, sy, sz) int64, used, dense)``: the blocks with voxels, by flat
    number, and whether they cover the batch more than :data:`VISIBLE_PASS_COVERAGE` times (then
    only the visible ones are worked on)."""
    flat_boxes = boxes.reshape(-1, 6)
    sizes = tuple(flat_boxes[:, 3 + a].astype(np.int64) for a in range(3))
    used = np.flatnonzero((sizes[0] > 0) & (sizes[1] > 0) & (sizes[2] > 0))
    voxels = int((sizes[0][used] * sizes[1][used] * sizes[2][used]).sum())
    return flat_boxes, sizes, used, voxels > VISIBLE_PASS_COVERAGE * boxes.shape[0] * nvox


def _shape_groups(used: np.ndarray, sx, sy, sz):
    """``(blocks, (sx, sy, sz))`` for each block shape among ``used`` (flat block numbers); within a
    shape, blocks stay in their order (by sample, then drawing order)."""
    top = [int(v.max()) + 1 for v in (sx, sy, sz)]
    shape_id = (sx[used] * top[1] + sy[used]) * top[2] + sz[used]
    small = np.int16 if top[0] * top[1] * top[2] < 1 << 15 else np.int64   # 16 bits: radix sort
    order = used[np.argsort(shape_id.astype(small), kind="stable")]
    counts = np.bincount(shape_id, minlength=top[0] * top[1] * top[2])
    ends = np.cumsum(counts)
    for sid in np.flatnonzero(counts).tolist():
        yield order[ends[sid] - counts[sid]:ends[sid]], (sid // (top[1] * top[2]), (sid // top[2]) % top[1], sid % top[2])


def _ranks(xp, blocks: np.ndarray, keys: np.ndarray, b: int, volume: int):
    """(blocks, volume) int32 for ``blocks`` (flat numbers, ``b`` per sample; ``keys`` (N,) int32 per
    sample): output position ``l`` of each block (C order) takes the block's voxel at position
    ``rank[l]``. The block's permutation sorts [random bits | position] (one row sort per block);
    bits and counters depend only on the block, never on the rest of the batch."""
    bits = _local_bits(volume)
    pos = xp.arange(volume, xp.int32).reshape(1, -1)
    counter = xp.param(((blocks % b) << bits).astype(np.int32)).reshape(-1, 1)
    key = keys.astype(np.int32)[blocks // b]
    rank = hash_bits_split(xp, counter, xp.param(key).reshape(-1, 1), pos)
    rank &= ~((1 << bits) - 1)
    rank |= pos
    rank = xp.sort_rows(rank)
    rank &= (1 << bits) - 1
    return rank


def _shuffle_compiled(boxes: np.ndarray, keys: np.ndarray, shape, source: np.ndarray, out: np.ndarray) -> bool:
    """numpy with numba (:mod:`._compiled`): the visible blocks painted in drawing order, each block's
    permutation from :func:`_ranks` (numpy's vectorised row sort, one per block shape), the blocks
    placed in drawing order from ``source`` (N, C, V) into ``out`` (N, C, V). The same result as
    the scatter of codes; ``False`` (nothing done) without numba."""
    compiled = compiled_kernels()
    if compiled is None:
        return False
    n, b = boxes.shape[:2]
    flat_boxes, (sx, sy, sz), used, dense = _blocks(boxes, int(np.prod(shape)))
    if used.size == 0:
        return True
    if dense:
        seen = np.zeros(n * b, dtype=bool)
        compiled.shown_blocks(flat_boxes, used, tuple(shape), b, seen)
        used = used[seen[used]]
    start = np.zeros(n * b, dtype=np.int64)
    slabs, filled = [], 0
    for blocks, (bx, by, bz) in _shape_groups(used, sx, sy, sz):
        size = bx * by * bz
        rank = (np.zeros((blocks.size, 1), dtype=np.int32) if size == 1
                else _ranks(NUMPY, blocks, keys, b, size))
        start[blocks] = filled + np.arange(blocks.size, dtype=np.int64) * size
        filled += rank.size
        slabs.append(rank.reshape(-1))
    compiled.place_blocks(flat_boxes, used, np.concatenate(slabs), start, tuple(shape), b, source, out)
    return True


#: Blocks covering the batch more than this many times over are first thinned to the visible ones
#: (:func:`_visible`): ``mg``'s 10,000 blocks cover a 224 × 224 image 26 times and leave 12 % of the
#: blocks (14 % of their voxels) visible; a 64 × 64 × 32 cube about twice, with most blocks visible.
VISIBLE_PASS_COVERAGE = 4


def _visible(used, base, sx, sy, sz, size: int, Y: int, Z: int) -> np.ndarray:
    """The blocks of ``used`` that some voxel shows: the last block covering it, found by one
    scatter-max of block numbers. The others cannot change the result, so their keys are never
    drawn nor sorted; the output is the same."""
    owner = np.full(size, -1, dtype=np.int32)
    for blocks, block_shape in _shape_groups(used, sx, sy, sz):
        offset = _template(*block_shape, Y, Z)
        vox = base[blocks].reshape(-1, 1) + offset.reshape(1, -1)
        np.maximum.at(owner, vox.reshape(-1), np.repeat(blocks.astype(np.int32), offset.size))
    seen = np.zeros(base.size, dtype=bool)
    seen[owner[owner >= 0]] = True
    return used[seen[used]]


class _Proposals:
    """numpy: each shape's (voxel, code) proposals and the block bounds of every sample."""

    def __init__(self, parts, compact: bool, vbits: int) -> None:
        self.parts, self.compact, self.vbits = parts, compact, vbits

    def __bool__(self) -> bool:
        return bool(self.parts)


def _scatter_numpy(proposals: _Proposals, start: int, stop: int, nvox: int) -> np.ndarray:
    """Source index (flat within samples ``start:stop``) of every voxel of those samples.

    All shapes' proposals for these samples go through one scatter-max into a code array of just
    these samples, which stays in cache.
    """
    offset = start * nvox
    parts = [(v[bd[start]:bd[stop]].reshape(-1), p[bd[start]:bd[stop]].reshape(-1))
             for v, p, bd in proposals.parts]
    vox = np.concatenate([v for v, _ in parts]) if parts else np.zeros(0, np.int64)
    if offset:
        vox -= offset
    codes = np.concatenate([p for _, p in parts]) if parts else np.zeros(0, np.int64)
    if proposals.compact:
        mask = (1 << proposals.vbits) - 1
        code = np.tile(_identity_code_compact(nvox, proposals.vbits), stop - start)
        np.maximum.at(code, vox, codes)
        code &= mask
        src = code.astype(np.int64)
        if stop - start > 1:
            src.reshape(stop - start, nvox)[...] += (np.arange(stop - start, dtype=np.int64) * nvox)[:, None]
        return src
    code = _identity_code((stop - start) * nvox)
    if offset:
        code += offset                 # own (batch) index in the low 32 bits, like the proposals
    np.maximum.at(code, vox, codes)
    code &= 0xFFFFFFFF
    if offset:
        code -= offset
    return code


@lru_cache(maxsize=8)
def _identity_code_compact(nvox: int, vbits: int) -> np.ndarray:
    """int32 ``own index − 2^vbits``: below every block code, own index in the low ``vbits`` bits."""
    out = np.arange(nvox, dtype=np.int32) - np.int32(1 << vbits)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def _identity_code_cached(size: int) -> np.ndarray:
    out = np.arange(size, dtype=np.int64) - (1 << 32)
    out.setflags(write=False)
    return out


def _identity_code(size: int) -> np.ndarray:
    """A fresh ``arange(size) − 2^32`` (low 32 bits: the voxel's own index; below every block code)."""
    return _identity_code_cached(size).copy()


@lru_cache(maxsize=512)
def _template(sx: int, sy: int, sz: int, Y: int, Z: int) -> np.ndarray:
    """Flat offsets (C order) of the voxels of an ``sx × sy × sz`` block in a cube of ``(·, Y, Z)``."""
    lx, ly, lz = np.meshgrid(np.arange(sx), np.arange(sy), np.arange(sz), indexing="ij")
    out = ((lx * Y + ly) * Z + lz).ravel().astype(np.int64)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _block_sides(block_size: tuple, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive side range per axis of a cube ``shape``, checked (a 2D image's z: side 1). Cached:
    every sample of a batch asks for the same one."""
    lo, hi = flat_axes(shape, *resolve_range(block_size, shape))
    dims = np.asarray(shape, dtype=np.int64)
    if np.any(lo < 1) or np.any(hi < lo) or np.any(hi > dims):
        raise ValueError(f"block_size {block_size!r} resolves to {lo.tolist()}..{hi.tolist()} in a "
                         f"{shape} cube; need 1 <= lo <= hi <= side")
    for a in (lo, hi):
        a.setflags(write=False)
    return lo, hi


def draw_blocks(rng: np.random.Generator, shape, lo, hi, count: int) -> np.ndarray:
    """``count`` blocks ``(x0, y0, z0, sx, sy, sz)``: sides U{lo..hi}, corners U{0..D−side} (int16).

    Vectorised, axes first (every operation runs over ``count`` contiguous values): sides by
    ``Generator.integers`` (inclusive bounds, as ``randint``), corners as ``floor(u · (D − side + 1))``
    of float64 uniforms (bias ~1e-16).
    """
    out = np.empty((count, 6), dtype=np.int16)
    sizes = np.stack([rng.integers(int(lo[a]), int(hi[a]), size=count, dtype=np.int16, endpoint=True)
                      for a in range(3)])
    span = np.asarray(shape, dtype=np.float64).reshape(3, 1) + 1.0 - sizes
    out[:, :3] = np.floor(rng.random((3, count)) * span).T
    out[:, 3:] = sizes.T
    return out


class LocalPixelShuffle(RandomOperation):
    """Permute the voxels inside random small blocks (docs/method.md §3.1 step 2; 5 blocks in §3.2).

    Args:
        blocks: blocks per sample (10,000 Models Genesis, 5 Semantic Genesis).
        block_size: inclusive side range per axis; ints are voxels, ``"D/10"`` is relative to the
            axis length (:mod:`.policy`). Default ``(1, "D/10")``.

    Parameters drawn per sample: ``boxes`` (B, 6) int16 ``(x0, y0, z0, sx, sy, sz)``, in drawing
    order (later blocks win), and ``key`` () int32 for the within-block permutations.

    Example:
        >>> x = np.random.default_rng(0).random((2, 1, 32, 32, 16), dtype=np.float32)
        >>> y, params = LocalPixelShuffle(blocks=50)(x, seed=0)
        >>> params["boxes"].shape, bool((y != x).any()), bool(np.isin(y, x).all())
        ((2, 50, 6), True, True)
    """

    name = "local_pixel_shuffle"
    whole_batch = True

    def __init__(self, blocks: int = 10_000, block_size=(1, "D/10")) -> None:
        if int(blocks) < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        self.blocks, self.block_size = int(blocks), tuple(block_size)

    def sample(self, rng: np.random.Generator, shape) -> dict:
        lo, hi = _block_sides(self.block_size, tuple(int(d) for d in shape))
        boxes = draw_blocks(rng, shape, lo, hi, self.blocks)            # inclusive, as randint
        key = np.int32(rng.integers(-(1 << 31), 1 << 31))
        return {"boxes": boxes, "key": key}

    def empty(self, shape) -> dict:
        return {"boxes": np.zeros((self.blocks, 6), dtype=np.int16), "key": np.int32(0)}

    def source_index(self, params: dict, shape, xp=NUMPY):
        """For each voxel of the batch, the flat index (in the batch) of the voxel it takes: (N·V,) int64.

        The heart of the operation (see the module docstring); identity where no block covers a voxel.
        Integer-exact, so numpy and torch give identical indices. On CPU the torch back end uses the
        numpy kernel (torch's CPU sort is 10-40× slower than numpy's); on a GPU everything stays there.
        """
        boxes = np.asarray(params["boxes"])
        keys = np.asarray(params["key"], dtype=np.int32).reshape(-1)
        n = boxes.shape[0]
        nvox = int(np.prod(shape))
        if xp.name == "torch" and (xp.device.type != "cpu" or not TORCH_CPU_USES_NUMPY):
            return _source_index(boxes, keys, tuple(shape), xp)
        src = np.arange(n * nvox, dtype=np.int64).reshape(n, 1, nvox)
        out = src.copy()
        if _shuffle_compiled(boxes, keys, tuple(shape), src, out):
            src = out.reshape(-1)
        else:
            pending = _source_index(boxes, keys, tuple(shape), NUMPY)
            src = np.concatenate([_scatter_numpy(pending, sl.start, sl.stop, nvox) + sl.start * nvox
                                  for sl in chunks(n, nvox)])
        return src if xp.name == "numpy" else xp.torch.from_numpy(src)

    def check(self, batch, params: dict) -> None:
        super().check(batch, params)
        boxes = np.asarray(params["boxes"])
        if boxes.ndim != 3 or boxes.shape[2] != 6:
            raise ValueError(f"boxes must be (N, B, 6), got {boxes.shape}")

    def _apply(self, x, params: dict):
        """Shuffle every sample's blocks (identity for samples without blocks); overwrites ``x``."""
        xp = self._xp(x)
        shape = tuple(int(s) for s in x.shape[2:])
        n, c = int(x.shape[0]), int(x.shape[1])
        nvox = shape[0] * shape[1] * shape[2]
        if xp.name == "numpy":
            boxes = np.asarray(params["boxes"])
            keys = np.asarray(params["key"], dtype=np.int32).reshape(-1)
            flat = x.reshape(n, c, nvox)
            if _shuffle_compiled(boxes, keys, shape, flat.copy(), flat):
                return x
            pending = _source_index(boxes, keys, shape, NUMPY)
            if not pending:
                return x
            for sl in chunks(n, nvox):              # cache-sized groups of samples, in place
                src = _scatter_numpy(pending, sl.start, sl.stop, nvox)
                for ch in range(c):
                    flat[sl, ch] = np.take(np.ascontiguousarray(flat[sl, ch]).reshape(-1), src).reshape(-1, nvox)
            return x
        src = self.source_index(params, shape, xp)
        if c == 1:
            return x.reshape(-1)[src].reshape(x.shape)
        out = xp.copy(x)
        for ch in range(c):  # channels share the blocks
            out[:, ch] = x[:, ch].reshape(-1)[src].reshape(x[:, ch].shape)
        return out
