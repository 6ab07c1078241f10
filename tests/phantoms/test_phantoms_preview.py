"""The preview PNG: one row of five CT panels per patient, each a windowed slice, all different."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from semgen_ray.phantoms.preview import save_preview

from figures import crop, grid, load, panels


def test_save_preview(tmp_path):
    pytest.importorskip("matplotlib")
    path = save_preview(tmp_path / "p.png", indices=(0, 1), shape=(64, 64, 32), dpi=30)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = load(path)
    assert img.shape == (2 * 3 * 30, 5 * 3 * 30, 3)           # figsize 3 in per panel, at 30 dpi
    boxes = panels(img)
    assert grid(boxes) == (2, 5)                               # a row per patient: 3 axial, coronal, sagittal
    grey = img.astype(int).mean(axis=2)
    inside = [crop(grey, b) for b in boxes]
    for p in inside:
        # the lung window [-1000, 400] HU shows air black and soft tissue / bone light
        assert p.std() > 40 and (p < 40).mean() > 0.1 and (p > 150).mean() > 0.15
    centres = [p[(p.shape[0] - 40) // 2:][:40, (p.shape[1] - 40) // 2:][:, :40] for p in inside]
    for a, b in itertools.combinations(range(len(centres)), 2):
        assert np.abs(centres[a] - centres[b]).mean() > 5, f"panels {a} and {b} show the same picture"


def test_preview_command_help_writes_nothing_and_the_output_is_named(tmp_path, monkeypatch, capsys):
    """``--help`` only prints; without ``--out`` the command refuses instead of writing into the
    current folder's ``docs/``; with it, the PNG goes where it says."""
    from semgen_ray.phantoms.preview import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "--out" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2 and "--out" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []                      # no docs/ folder, no PNG
    assert main(["--out", "p.png", "--indices", "0", "--shape", "32", "32", "16", "--dpi", "20"]) == 0
    assert load(tmp_path / "p.png").shape == (60, 300, 3) and [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_radiographs_png_one_film_per_patient_with_red_nodule_boxes(tmp_path):
    """``--radiographs``: the patients' PA films side by side; red boxes only where a patient has nodules."""
    pytest.importorskip("matplotlib")
    from semgen_ray.phantoms.preview import main
    from semgen_ray.phantoms.radiograph import phantom_radiograph

    shape = (64, 64, 32)
    assert main(["--radiographs", "--out", str(tmp_path / "r.png"), "--indices", "0", "1",
                 "--shape", *map(str, shape), "--dpi", "30"]) == 0
    img = load(tmp_path / "r.png")
    assert img.shape == (105, 210, 3)                          # 3.5 in per film, at 30 dpi
    boxes = panels(img)
    assert grid(boxes) == (1, 2)
    red = (img[..., 0].astype(int) - img[..., 1]) > 80
    for box, index in zip(sorted(boxes, key=lambda b: b[1]), (0, 1)):
        has_nodules = bool(phantom_radiograph(index, shape=shape).boxes)
        assert crop(red, box).any() == has_nodules, index
    assert phantom_radiograph(1, shape=shape).boxes              # the check above saw red at least once
