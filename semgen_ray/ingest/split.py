"""Stable train/val/test assignment of patients."""

from __future__ import annotations

from semgen_ray.seeds import patient_unit

SPLITS = ("train", "val", "test")


def assign_split(patient_id: str, fractions: tuple[float, float, float]) -> str:
    """The split of ``patient_id`` from a hash of the id alone (:func:`semgen_ray.seeds.patient_unit`).

    The same id always gets the same split, and adding patients to a cohort never moves existing
    ones (unlike shuffling a list).
    """
    u = patient_unit(patient_id)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1] if fractions[-1] > 0 else next(n for n, f in zip(SPLITS[::-1], fractions[::-1]) if f > 0)
