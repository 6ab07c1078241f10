"""Montage and distance plot PNGs."""

from __future__ import annotations

import numpy as np

from semgen_ray.discovery.montage import write_distance_plot, write_montage

PNG = b"\x89PNG\r\n\x1a\n"


def test_montage_png(tmp_path):
    rng = np.random.default_rng(0)
    crops = [rng.random((32, 32, 16)).astype(np.float32) for _ in range(5)] + [rng.random((32, 32))]
    path = write_montage(tmp_path / "m" / "class_000.png", crops, title="class 0: reference p0 at (1, 2, 3)")
    data = path.read_bytes()
    assert data.startswith(PNG) and 1000 < len(data) < 300_000
    empty = write_montage(tmp_path / "empty.png", [], title="none")
    assert empty.read_bytes().startswith(PNG)


def test_distance_plot_png(tmp_path):
    path = write_distance_plot(tmp_path / "d.png", [[0.0, 1.0, 2.5], [0.0, 0.3, 0.9]])
    assert path.read_bytes().startswith(PNG)
    path = write_distance_plot(tmp_path / "e.png", {i: np.arange(5.0) * i for i in range(20)})
    assert path.stat().st_size > 1000
