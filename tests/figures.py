"""Reading the project's PNG figures back in tests: pixels, panels and their grid.

A test that only checks a PNG header or a file size passes for a blank, a one-panel or a garbled
figure. These helpers open the picture (PIL) and find its panels: the large connected regions that
are not background (a matplotlib axes with its frame and contents, or an image drawn without axes),
with regions nested inside another (curves, legends) dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Matplotlib's default colour cycle (C0, C1, C2) and the named colours the figures use, as RGB.
C0, C1, C2 = (31, 119, 180), (255, 127, 14), (44, 160, 44)
GREEN = (0, 128, 0)


def load(path) -> np.ndarray:
    """The picture at ``path`` as an (H, W, 3) uint8 RGB array (palette and alpha images converted)."""
    from PIL import Image

    with Image.open(Path(path)) as im:
        return np.asarray(im.convert("RGB"))


def panels(img: np.ndarray, min_height: float = 0.2, min_width: float = 0.05, background: int = 250):
    """Bounding boxes ``(top, left, bottom, right)`` (bottom/right exclusive) of the panels of ``img``.

    A panel is a connected region of non-background pixels (any channel below ``background``) whose
    bounding box spans at least ``min_height`` of the picture's height and ``min_width`` of its
    width, and lies inside no other such box. Sorted by row, then column (see :func:`grid`).
    """
    from scipy import ndimage

    ink = (img < background).any(axis=2)
    labels, _ = ndimage.label(ink)
    h, w = ink.shape
    boxes = [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(labels) if s is not None]
    big = [b for b in boxes if b[2] - b[0] >= min_height * h and b[3] - b[1] >= min_width * w]
    outer = [b for b in big if not any(o != b and o[0] <= b[0] and o[1] <= b[1] and o[2] >= b[2] and o[3] >= b[3]
                                       for o in big)]
    rows, cols = _centres(outer)
    return sorted(outer, key=lambda b: (rows[(b[0] + b[2]) / 2], cols[(b[1] + b[3]) / 2]))


def _centres(boxes) -> tuple[dict, dict]:
    """Row and column cluster of every panel centre: centres closer than a quarter of the smallest
    panel's height (width) share a row (column)."""
    if not boxes:
        return {}, {}
    h = min(b - t for t, _, b, _ in boxes)
    w = min(r - l_ for _, l_, _, r in boxes)
    return (_clusters([(t + b) / 2 for t, _, b, _ in boxes], h / 4),
            _clusters([(l_ + r) / 2 for _, l_, _, r in boxes], w / 4))


def _clusters(values, tol: float) -> dict:
    """value → index of its cluster (values within ``tol`` pixels of the previous one share one)."""
    out, k, last = {}, -1, None
    for v in sorted(values):
        if last is None or v - last > tol:
            k += 1
        out[v], last = k, v
    return out


def grid(boxes) -> tuple[int, int]:
    """``(rows, columns)`` of panels laid out on a full grid (panel centres aligned per row and column);
    raises ``AssertionError`` when they are not (a missing, extra or misplaced panel)."""
    rows, cols = _centres(boxes)
    nr, nc = len(set(rows.values())), len(set(cols.values()))
    cells = {(rows[(t + b) / 2], cols[(l_ + r) / 2]) for t, l_, b, r in boxes}
    assert len(boxes) == nr * nc == len(cells), f"{len(boxes)} panels do not fill a {nr} x {nc} grid: {boxes}"
    return nr, nc


def crop(img: np.ndarray, box, inset: int = 2) -> np.ndarray:
    """The inside of a panel, ``inset`` pixels in from its bounding box (past a frame line)."""
    t, l_, b, r = box
    return img[t + inset:b - inset, l_ + inset:r - inset]


def has_colour(img: np.ndarray, rgb, tol: int = 40, min_pixels: int = 5) -> bool:
    """At least ``min_pixels`` pixels within ``tol`` (per channel) of colour ``rgb``."""
    near = (np.abs(img.astype(int) - np.asarray(rgb)) <= tol).all(axis=-1)
    return int(near.sum()) >= min_pixels


def colour_columns(img: np.ndarray, rgb, tol: int = 40) -> np.ndarray:
    """Column indices of ``img`` holding a pixel of colour ``rgb`` (within ``tol``)."""
    near = (np.abs(img.astype(int) - np.asarray(rgb)) <= tol).all(axis=-1)
    return np.flatnonzero(near.any(axis=0))


def _runs(columns: np.ndarray) -> int:
    """Separate runs of consecutive column indices (one per box or bar)."""
    return 0 if columns.size == 0 else 1 + int((np.diff(columns) > 1).sum())


def check_evaluation_figures(out, tasks, arms: int, bars: bool = True) -> None:
    """The evaluation report's PNGs in ``out`` (:mod:`semgen_ray.evaluate.report`): ``curve.png`` a
    panel per task with a line per arm (up to 3 colours checked); ``box_<task>.png`` one box (its
    orange median line) per arm; ``bars_<task>.png`` one bar per arm (``bars=False``: not counted,
    for real results whose mean may be 0, a bar of no height)."""
    out = Path(out)
    img = load(out / "curve.png")
    want = (272, round(4.2 * 80) * len(tasks), 3)                  # figsize (4.2 per task, 3.4), 80 dpi
    assert img.shape == want, f"curve.png is {img.shape}, not {want} for {len(tasks)} task panels"
    boxes = panels(img)
    assert grid(boxes) == (1, len(tasks)), f"curve.png: panels {boxes}, not one per task"
    for b in boxes:
        missing = [i for i, c in enumerate((C0, C1, C2)[:arms]) if not has_colour(crop(img, b), c, min_pixels=50)]
        assert not missing, f"curve.png panel {b}: no line of arm(s) {missing}"
    for task in tasks:
        box, bar = load(out / f"box_{task}.png"), load(out / f"bars_{task}.png")
        want = (256, round((1.4 * arms + 2) * 80), 3)               # 1.4 in per arm + 2 in, 3.2 in high
        assert box.shape == bar.shape == want, f"{task}: box {box.shape}, bars {bar.shape}, not {want}"
        (b,), (c,) = panels(box), panels(bar)
        medians = _runs(colour_columns(crop(box, b), C1, tol=20))
        assert medians == arms, f"box_{task}.png: {medians} median lines for {arms} arms"
        if bars:
            count = _runs(colour_columns(crop(bar, c), (0x88, 0xAA, 0xAA), tol=20))   # "#8aa"
            assert count == arms, f"bars_{task}.png: {count} bars for {arms} arms"
