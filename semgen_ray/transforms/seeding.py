"""Per-sample random streams: every draw derives from (seed, sample), never from global RNG state.

docs/design.md, "Decisions and why": randomness derives from (run seed, epoch, sample id), so a batch can be
replayed and no two Ray Data workers or DeepSpeed ranks repeat each other's streams. A corruption
call takes either

* an int ``seed``: sample ``i`` of the batch draws from ``SeedSequence([seed, i])``; or
* an array or a list of N per-sample int seeds, e.g. ``sample_seed(run_seed, epoch, sample_id)`` for each sample:
  sample ``i`` draws from ``SeedSequence(seeds[i])``, so its corruption does not depend on which
  other samples share its batch, or in which order; or
* an (N, k) array of seed rows (``CorruptionParams.entropy``): sample ``i`` draws from
  ``SeedSequence(list(rows[i]))``. The first two forms are recorded this way.
"""

from __future__ import annotations

import numpy as np


def sample_seed(run_seed: int, epoch: int, sample_id: int) -> int:
    """A 64-bit seed for one sample of one epoch of one run.

    Args:
        run_seed: the run's seed (>= 0).
        epoch: the epoch (>= 0); use a fixed value (e.g. 0) for a fixed validation corruption.
        sample_id: a stable id of the sample (>= 0), e.g. its row in the pattern manifest.

    Returns:
        an int in [0, 2^64), a hash of the three (numpy ``SeedSequence``), to pass to a corruption
        as one entry of its per-sample ``seed`` array.

    Example:
        >>> sample_seed(0, 1, 2) == sample_seed(0, 1, 2) != sample_seed(0, 2, 1)
        True
    """
    for name, v in (("run_seed", run_seed), ("epoch", epoch), ("sample_id", sample_id)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    # The tag keeps these streams apart from SeedSequence([seed, i]) of int-seeded calls.
    state = np.random.SeedSequence([int(run_seed), int(epoch), int(sample_id), 0x5E6E]).generate_state(1, np.uint64)
    return int(state[0])


def seed_rows(seed, n: int) -> np.ndarray:
    """The per-sample seed rows (N, k) uint64 of a corruption call; see the module docstring.

    Raises:
        ValueError: a negative or non-integer seed, or an array of the wrong length.
    """
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        rows = np.empty((n, 2), dtype=np.uint64)
        rows[:, 0] = int(seed)
        rows[:, 1] = np.arange(n, dtype=np.uint64)
        return rows
    if isinstance(seed, (list, tuple)):
        arr = _int_seed_array(seed, n)
    else:
        arr = np.asarray(seed)
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"seed must be an int, an array of {n} per-sample int seeds, or an ({n}, k) array "
                         f"of seed rows; got {type(seed).__name__} with shape {getattr(arr, 'shape', None)} "
                         f"and dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError("per-sample seeds must be >= 0")
    return arr.astype(np.uint64).reshape(n, -1)


def _int_seed_array(seeds: list | tuple, n: int) -> np.ndarray:
    """A list of Python ints (e.g. ``[sample_seed(...) for ...]``, up to 2^64 - 1), or a list of int
    rows, as a uint64 array; numpy alone would turn ints of 2^63 and more into float64."""
    flat = [v for row in seeds for v in (row if isinstance(row, (list, tuple, np.ndarray)) else [row])]
    for v in flat:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"per-sample seeds must be ints, e.g. from sample_seed(run_seed, epoch, sample_id); "
                             f"got {type(v).__name__} {v!r} among the {n} seeds")
        if not 0 <= int(v) < 2 ** 64:
            raise ValueError(f"per-sample seeds must be in [0, 2^64), got {v}")
    try:
        return np.array([[int(v) for v in row] if isinstance(row, (list, tuple, np.ndarray)) else int(row)
                         for row in seeds], dtype=np.uint64)
    except ValueError as err:  # ragged rows
        raise ValueError(f"seed rows must all have the same length: {err}") from None


def sample_rng(row) -> np.random.Generator:
    """The generator of one sample, from its seed row."""
    return np.random.default_rng(np.random.SeedSequence([int(v) for v in row]))
