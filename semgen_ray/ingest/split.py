"""Stable train/val/test assignment of patients."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def assign_split(patient_id: str, fractions: tuple[float, float, float]) -> str:
    """The split of ``patient_id`` from a hash of the id alone.

    The same id always gets the same split, and adding patients to a cohort never moves existing
    ones (unlike shuffling a list).
    """
    digest = hashlib.sha256(patient_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1] if fractions[-1] > 0 else next(n for n, f in zip(SPLITS[::-1], fractions[::-1]) if f > 0)
