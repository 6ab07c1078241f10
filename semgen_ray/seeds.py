"""Stable integers from patient ids: the one derivation every per-patient random stream and the
hash split use.

A patient's seed is a 64-bit hash of its *whole* id (SHA-256 of the UTF-8 bytes, first 8 bytes of the
digest read big-endian), so it is the same in every process, on every machine and in every Python
version (unlike ``hash()``), and ids that share a prefix (``phantom_00001``, ``phantom_00002``) get
unrelated seeds. Callers mix it with their own integers, e.g.
``np.random.SeedSequence([run_seed, patient_seed(pid), stream])``.
"""

from __future__ import annotations

import hashlib

#: ``patient_seed`` lies in [0, 2**64).
SEED_BITS = 64


def patient_seed(patient_id: str) -> int:
    """A stable 64-bit integer from the whole ``patient_id``.

    Example:
        >>> patient_seed("phantom_00001") != patient_seed("phantom_00002")
        True
    """
    if not isinstance(patient_id, str):
        raise TypeError(f"patient_id must be a str, got {type(patient_id).__name__}")
    return int.from_bytes(hashlib.sha256(patient_id.encode("utf-8")).digest()[:SEED_BITS // 8], "big")


def patient_unit(patient_id: str) -> float:
    """:func:`patient_seed` mapped to [0, 1) (the hash split's coordinate)."""
    return patient_seed(patient_id) / 2.0 ** SEED_BITS


__all__ = ["SEED_BITS", "patient_seed", "patient_unit"]
