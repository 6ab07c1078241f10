"""Montage and distance plot PNGs."""

from __future__ import annotations

import numpy as np

from semgen_ray.discovery.montage import write_distance_plot, write_montage


def _grey(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("L"), dtype=np.int64)


def test_montage_png(tmp_path):
    rng = np.random.default_rng(0)
    crops = [rng.random((32, 32, 16)).astype(np.float32) for _ in range(5)] + [rng.random((32, 32))]
    path = write_montage(tmp_path / "m" / "class_000.png", crops, title="class 0: reference p0 at (1, 2, 3)")
    grey = _grey(path)
    assert grey.shape == (round((1.2 + 0.4) * 80), round(6 * 1.2 * 80))  # one row of six 1.2-inch tiles
    assert grey.std() > 20  # noise tiles, not a blank picture
    empty = _grey(write_montage(tmp_path / "empty.png", [], title="none"))
    assert empty.shape == (128, 96) and (empty == 255).mean() > 0.9  # a white tile saying "no crops"


def test_montage_panels_are_in_order_row_by_row(tmp_path):
    """Seven flat crops of distinct grey levels on three columns: each level fills one tile, tiles run
    left to right and then down (the reference first, top left), and the last row has one tile."""
    levels = [0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75]
    crops = [np.full((16, 16, 8), v, np.float32) for v in levels]
    grey = _grey(write_montage(tmp_path / "grid.png", crops, title="grid", ncols=3))
    assert grey.shape == (round((3 * 1.2 + 0.4) * 80), round(3 * 1.2 * 80))
    centres = []
    for v in levels:
        mask = np.abs(grey - round(v * 255)) <= 1  # (anti-aliased title text has stray pixels of it)
        ys, xs = np.flatnonzero(mask.sum(1) >= 20), np.flatnonzero(mask.sum(0) >= 20)
        assert len(ys) >= 20 and len(xs) >= 20, v  # a tile of at least 20×20 pixels in that grey
        assert np.ptp(ys) < grey.shape[0] / 3 and np.ptp(xs) < grey.shape[1] / 3  # one tile, not spread
        centres.append((ys.mean(), xs.mean()))
    rows = [0, 0, 0, 1, 1, 1, 2]
    cols = [0, 1, 2, 0, 1, 2, 0]
    for i in range(len(levels)):
        for j in range(len(levels)):
            if rows[i] < rows[j]:
                assert centres[i][0] < centres[j][0] - 30, (i, j)
            if rows[i] == rows[j] and cols[i] < cols[j]:
                assert abs(centres[i][0] - centres[j][0]) < 3 and centres[i][1] < centres[j][1] - 30, (i, j)
            if cols[i] == cols[j]:
                assert abs(centres[i][1] - centres[j][1]) < 3, (i, j)
    # the window: 0 and 1 map to black and white
    bw = _grey(write_montage(tmp_path / "bw.png", [np.zeros((8, 8)), np.ones((8, 8))], title=None))
    assert (bw < 5).sum() > 400 and (bw > 250).sum() > 400


def test_distance_plot_png(tmp_path):
    grey = _grey(write_distance_plot(tmp_path / "d.png", [[0.0, 1.0, 2.5], [0.0, 0.3, 0.9]]))
    assert min(grey.shape) > 100 and grey.std() > 5 and (grey < 128).sum() > 100  # axes, lines, labels
    path = write_distance_plot(tmp_path / "e.png", {i: np.arange(5.0) * i for i in range(20)})
    assert _grey(path).std() > 5


def test_montage_tiles_name_the_neighbour_its_distance_and_the_slice():
    """The titles a discovery montage gets (checked on the figure before saving): the reference, then
    each neighbour's patient id, embedding distance and axial slice; the plane in the title."""
    import matplotlib.pyplot as plt

    from semgen_ray.discovery.montage import montage_figure, neighbour_labels

    labels = neighbour_labels(["p7", "p2", "p9"], [0.0, 1.23456, 2.5], [12, 12, 14])
    assert labels == ["reference p7\nz 12", "#1 p2\nd 1.23, z 12", "#2 p9\nd 2.5, z 14"]
    rng = np.random.default_rng(1)
    fig = montage_figure([rng.random((16, 16, 8)) for _ in range(3)], "class 0: reference p7 at (1, 2, 3)\n"
                         "axial slices (z) of the crops; d: embedding distance", labels)
    try:
        tiles = [ax for ax in fig.axes if ax.get_images()]
        assert [ax.get_title() for ax in tiles] == labels
        assert "axial" in fig._suptitle.get_text() and "reference p7" in fig._suptitle.get_text()
        assert all(ax.get_images()[0].get_array().std() > 0.1 for ax in tiles)
        fig.canvas.draw()                                       # the title band does not run into the tiles
        renderer = fig.canvas.get_renderer()
        title_bottom = fig._suptitle.get_window_extent(renderer).y0
        assert all(ax.title.get_window_extent(renderer).y1 <= title_bottom + 1 for ax in tiles)
    finally:
        plt.close(fig)
