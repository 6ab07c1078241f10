"""Intensity mappings applied when volumes are read (the store keeps raw HU / scanner units).

Semantic Genesis clips CT to the HU window [-1000, 1000] and maps it linearly to [0, 1]
(docs/method.md §1.1). CT keeps that fixed window. MR (and ``OT``) has no common unit: it arrives in raw
scanner units, z-scored per volume, as 8-bit exports, … A fixed window (Models Genesis advises
[0, 4000], docs/method.md §6.2) turns a z-scored volume into a blank image, so MR is mapped **per volume**
by default, from the percentiles of its foreground (rule ``foreground_percentile``):

1. *Sample*: every voxel, or every k-th voxel in memory order when the volume has more than
   2**22 voxels (k = ceil(voxels / 2**22)).
2. *Fill*: when 0 lies strictly between the minimum and the maximum and at least 10 % of the voxels
   are exactly 0, 0 is a fill value (the background of a masked / skull-stripped export, e.g.
   z-scored brain-tumour challenge data): those voxels are left out and map to 0 on read.
3. *Foreground*: the remaining voxels above ``min + 5 % × (p99.5 − min)`` (min and p99.5 of the
   remaining voxels): air and noise around the body are background, every tissue is foreground.
4. *Window*: ``[lo, hi]`` = the 0.5th and 99.5th percentiles of the foreground.
5. *Read*: clip to ``[lo, hi]``, map linearly to [0, 1]; fill voxels map to 0.

Every step is invariant under ``v → a·v + b`` (a > 0), so the same anatomy gives the same [0, 1] image
whether it was stored in scanner units, z-scored or rescaled (8-bit exports up to their rounding).
The statistics are computed **once, when a patient is written** (ingest), from the whole volume and
kept in the patient's metadata (``attributes["semgen_ray"]["intensity"]``); every read, of the whole
volume or of any crop, applies the same recorded mapping. ``ingest.mr_intensity: fixed`` records the
fixed window ``ingest.mr_window`` (default [0, 4000]) instead.

Each written patient is also checked against the mapping it will be read with: when most (> 50 %) of
its foreground maps to one end of the window (within 1 % of 0 or of 1), or the foreground spans less
than 10 % of [0, 1], a warning goes into the patient's ``warnings`` (and the manifest) and a Python
:class:`IntensityWarning` is raised.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

RULES = ("foreground_percentile", "fixed")
RULE_VERSION = 1
PERCENTILES = (0.5, 99.5)
FOREGROUND_LEVEL = 0.05  # of (p99.5 - min) above the minimum
FILL_MIN_FRACTION = 0.10
SAMPLE_VOXELS = 1 << 22
END_TOLERANCE = 0.01  # "at an end": within this of 0 or 1 after mapping
CLIP_WARN_FRACTION = 0.5
SPAN_WARN = 0.10


class IntensityWarning(UserWarning):
    """A volume's intensities do not fit the mapping it is read with (a nearly blank image)."""


@dataclass(frozen=True)
class IntensityWindow:
    """Clip to [lo, hi] and map linearly onto [0, 1] (float32); voxels equal to ``fill`` map to 0.

    ``rule`` records how ``lo``/``hi`` were chosen (``fixed`` or ``foreground_percentile``).
    """

    lo: float
    hi: float
    fill: float | None = None
    rule: str = "fixed"

    def __post_init__(self) -> None:
        if not np.isfinite([self.lo, self.hi]).all() or self.hi <= self.lo:
            raise ValueError(f"intensity window needs finite lo < hi, got [{self.lo}, {self.hi}]")
        if self.rule not in RULES:
            raise ValueError(f"intensity rule must be one of {list(RULES)}, got {self.rule!r}")

    def apply(self, array: np.ndarray) -> np.ndarray:
        src = np.asarray(array)
        out = src.astype(np.float32, copy=True) if self.fill is not None else np.asarray(src, dtype=np.float32)
        scale = np.float32(1.0 / (self.hi - self.lo))
        out = (out - np.float32(self.lo)) * scale
        np.clip(out, 0.0, 1.0, out=out)
        if self.fill is not None:
            out[src == self.fill] = 0.0
        return out

    def as_dict(self) -> dict:
        return {"rule": self.rule, "window": [float(self.lo), float(self.hi)],
                "fill": None if self.fill is None else float(self.fill)}

    @classmethod
    def from_dict(cls, d: dict) -> IntensityWindow:
        lo, hi = d["window"]
        return cls(float(lo), float(hi), None if d.get("fill") is None else float(d["fill"]),
                   d.get("rule", "fixed"))


CT_WINDOW = IntensityWindow(-1000.0, 1000.0)
MR_WINDOW = IntensityWindow(0.0, 4000.0)


def default_window(modality: str) -> IntensityWindow:
    """The reference *fixed* window of a modality: CT HU [-1000, 1000]; MR and other [0, 4000].

    What a read with ``normalize=True`` applies is the patient's recorded mapping
    (:func:`mapping_of`): for MR that is the per-volume rule unless ingest chose ``fixed``.
    """
    return CT_WINDOW if modality == "CT" else MR_WINDOW


def _sample(array: np.ndarray) -> tuple[np.ndarray, int]:
    flat = np.asarray(array).reshape(-1)
    step = max(1, math.ceil(flat.size / SAMPLE_VOXELS))
    sample = flat[::step]
    if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
        sample = sample[np.isfinite(sample)]  # ingest refuses NaN/inf; a direct write may hold some
    return sample, step


def _foreground(sample: np.ndarray) -> tuple[np.ndarray, dict]:
    """Foreground voxels of a sample (steps 2-3 of the rule) and the numbers that chose them."""
    vmin, vmax = float(sample.min()), float(sample.max())
    fill = None
    if vmin < 0.0 < vmax and np.count_nonzero(sample == 0) >= FILL_MIN_FRACTION * sample.size:
        fill = 0.0
        sample = sample[sample != 0]
    m = float(sample.min())
    top = float(np.percentile(sample, PERCENTILES[1]))
    threshold = m + FOREGROUND_LEVEL * (top - m)
    fg = sample[sample > threshold]
    if fg.size < max(64, sample.size // 1000):  # no background/foreground split: use every voxel
        fg = sample
    return fg, {"min": vmin, "max": vmax, "fill": fill, "threshold": threshold}


def foreground_stats(array: np.ndarray) -> dict:
    """The per-volume statistics of the ``foreground_percentile`` rule (module docstring)."""
    sample, step = _sample(array)
    fg, info = _foreground(sample)
    return _stats(sample, step, fg, info)


def _stats(sample: np.ndarray, step: int, fg: np.ndarray, info: dict) -> dict:
    lo, hi = (float(v) for v in np.percentile(fg, PERCENTILES))
    if not hi > lo:
        lo, hi = float(fg.min()), float(fg.max())
    if not hi > lo:  # a (nearly) constant volume
        lo, hi = info["min"], (info["max"] if info["max"] > info["min"] else info["min"] + 1.0)
    return {**info, "percentiles": list(PERCENTILES), "lo": lo, "hi": hi,
            "foreground_fraction": float(fg.size / sample.size), "sample_step": step,
            "version": RULE_VERSION}


def choose_mapping(modality: str, stats: dict, mr_intensity: str = "foreground_percentile",
                   mr_window: tuple[float, float] = (MR_WINDOW.lo, MR_WINDOW.hi)) -> IntensityWindow:
    """The mapping a patient is read with: CT the HU window; MR/OT per ``mr_intensity``."""
    if modality == "CT":
        return CT_WINDOW
    if mr_intensity == "fixed":
        return IntensityWindow(float(mr_window[0]), float(mr_window[1]))
    if mr_intensity != "foreground_percentile":
        raise ValueError(f"mr_intensity must be one of {list(RULES)}, got {mr_intensity!r}")
    return IntensityWindow(stats["lo"], stats["hi"], stats["fill"], "foreground_percentile")


def check_mapping(array: np.ndarray, window: IntensityWindow) -> tuple[dict, list[str]]:
    """How the foreground of ``array`` lands in [0, 1] under ``window``, and warnings when it is
    nearly blank or saturated (module docstring)."""
    sample, step = _sample(array)
    fg, info = _foreground(sample)
    return _check(fg, window, _stats(sample, step, fg, info))


def _check(fg: np.ndarray, window: IntensityWindow, stats: dict,
           advice: str = "use ingest.mr_intensity=foreground_percentile or a window that fits the data",
           ) -> tuple[dict, list[str]]:
    # The mapping is monotone on the foreground (fill voxels are not in it): compare raw values with
    # the window's 1 % ends and map the foreground percentiles, instead of mapping every voxel.
    width = window.hi - window.lo
    at_low = float(np.count_nonzero(fg <= window.lo + END_TOLERANCE * width) / fg.size)
    at_high = float(np.count_nonzero(fg >= window.hi - END_TOLERANCE * width) / fg.size)
    q_lo, q_hi = (float(x) for x in window.apply(np.array([stats["lo"], stats["hi"]])))
    check = {"foreground_at_low": round(at_low, 4), "foreground_at_high": round(at_high, 4),
             "foreground_range": [round(q_lo, 4), round(q_hi, 4)]}
    win = f"[{window.lo:g}, {window.hi:g}] ({window.rule})"
    data = f"foreground values {stats['lo']:.4g}..{stats['hi']:.4g} (0.5th..99.5th percentiles)"
    out = []
    for frac, end in ((at_low, "low"), (at_high, "high")):
        if frac > CLIP_WARN_FRACTION:
            out.append(f"intensity: {frac:.0%} of the foreground clips to the {end} end of the window "
                       f"{win}, {data}: the image is nearly {'blank' if end == 'low' else 'saturated'}; "
                       f"{advice}")
    if not out and q_hi - q_lo < SPAN_WARN:
        out.append(f"intensity: the foreground uses only [{q_lo:.3f}, {q_hi:.3f}] of [0, 1] under the "
                   f"window {win}, {data}: a nearly uniform image; "
                   f"{advice}")
    return check, out


def describe(array: np.ndarray, modality: str, mr_intensity: str = "foreground_percentile",
             mr_window: tuple[float, float] = (MR_WINDOW.lo, MR_WINDOW.hi), warn: bool = True) -> dict:
    """The ``intensity`` record of a patient: its mapping on read, the statistics, the check.

    ``warn`` raises an :class:`IntensityWarning` for each warning of the check. A volume without a
    finite voxel gets the modality's fixed window and no statistics.
    """
    sample, step = _sample(array)
    if not sample.size:
        return {**default_window(modality).as_dict(), "stats": None, "check": None, "warnings": []}
    fg, info = _foreground(sample)
    stats = _stats(sample, step, fg, info)
    window = choose_mapping(modality, stats, mr_intensity, mr_window)
    advice = ("are these Hounsfield units? (else ingest with --modality MR)" if modality == "CT" else
              "the volume has (almost) no contrast" if window.rule == "foreground_percentile" else
              "use ingest.mr_intensity=foreground_percentile or a window that fits the data")
    check, notes = _check(fg, window, stats, advice)
    if warn:
        for note in notes:
            warnings.warn(note, IntensityWarning, stacklevel=3)
    return {**window.as_dict(), "stats": stats, "check": check, "warnings": notes}


def mapping_of(record: dict | None, modality: str) -> IntensityWindow | None:
    """The mapping recorded for a patient (None when it has no record and is not CT)."""
    if record:
        return IntensityWindow.from_dict(record)
    return CT_WINDOW if modality == "CT" else None


def card_entry(records: list[tuple[str, dict | None]]) -> dict | None:
    """The model card's ``intensity`` field from ``(modality, record)`` of the training patients.

    A CT-only cohort gives the reference form (HU window [-1000, 1000]); per-volume mappings list
    the rule and the range of the per-volume windows. No patients: None (the card's default).
    """
    if not records:
        return None
    by_mod: dict[str, list[dict | None]] = {}
    for modality, record in records:
        by_mod.setdefault(modality, []).append(record)
    entries = {}
    for modality, recs in sorted(by_mod.items()):
        known = [r for r in recs if r]
        rules = sorted({r["rule"] for r in known})
        if len(known) < len(recs):  # unrecorded: CT reads the HU window, MR computes the rule on read
            rules = sorted({*rules, "fixed" if modality == "CT" else "foreground_percentile"})
        entry = {"modality": modality, "unit": "HU" if modality == "CT" else "scanner units",
                 "range": [0.0, 1.0], "patients": len(recs)}
        windows = sorted({tuple(r["window"]) for r in known if r["rule"] == "fixed"})
        if rules == ["fixed"] and len(windows) <= 1:
            win = list(windows[0]) if windows else [CT_WINDOW.lo, CT_WINDOW.hi]
            entry.update(rule="fixed", window=[float(w) for w in win],
                         mapping="clip to window, then (v - lo) / (hi - lo)")
        else:
            entry.update(rule=rules[0] if len(rules) == 1 else rules, window=None,
                         mapping="per volume: clip to [lo, hi] = the 0.5th/99.5th percentiles of the "
                                 "foreground (voxels above min + 5 % of (p99.5 - min); a 0 fill "
                                 "holding >= 10 % of voxels excluded and mapped to 0), then "
                                 "(v - lo) / (hi - lo)",
                         percentiles=list(PERCENTILES))
            per = [r for r in known if r["rule"] == "foreground_percentile"]
            if per:
                entry["per_volume"] = {
                    "lo": [min(r["window"][0] for r in per), max(r["window"][0] for r in per)],
                    "hi": [min(r["window"][1] for r in per), max(r["window"][1] for r in per)]}
            if windows:
                entry["fixed_windows"] = [list(w) for w in windows]
        entries[modality] = entry
    if len(entries) == 1:
        return next(iter(entries.values()))
    return {"modality": "mixed", "range": [0.0, 1.0], "by_modality": entries}


def store_card_entry(store_uri: str) -> dict | None:
    """:func:`card_entry` for every complete patient of a store (from its manifest)."""
    import json

    from semgen_ray.store.manifest import is_volume
    from semgen_ray.store.volume_store import open_store

    rows = [r for r in open_store(store_uri).manifest_rows() if r["status"] == "ok" and is_volume(r)]
    return card_entry([(r["modality"], json.loads(r["intensity"]) if r.get("intensity") else None)
                       for r in rows])
