"""Per-rank seeding, the same in every training loop.

Every rank builds the model from the run seed, so all ranks start from the same initial weights
(DDP and DeepSpeed would broadcast them anyway; this makes a single rank reproducible too), then
Python, numpy and torch draw from a stream of their own: ``seed + rank``.
"""

from __future__ import annotations

import random


def seed_rank(seed: int, rank: int, build):
    """Seed this rank, call ``build()`` (the model) under torch's run seed, then give torch the
    rank's stream; returns what ``build`` returned."""
    import numpy as np
    import torch

    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed)  # the same initial weights on every rank ...
    built = build()
    torch.manual_seed(seed + rank)  # ... then a stream of its own per rank
    return built
