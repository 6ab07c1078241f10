"""The pretraining report's pictures, read back: loss_curves.png and samples.png (no training run:
the report functions get a small history, stand-in validation cubes and a stand-in model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semgen_ray.config import load_config
from semgen_ray.train.report import write_loss_curves, write_samples

from figures import C0, C1, GREEN, colour_columns, crop, grid, has_colour, load, panels

pytest.importorskip("matplotlib")


def history(warmup: int = 1, epochs: int = 4) -> list[dict]:
    """Falling losses; the first ``warmup`` epochs are classification warm-up (no restoration term)."""
    return [{"epoch": e, "phase": "warmup" if e <= warmup else "joint", "train_loss": 1 / e, "val_loss": 1.2 / e,
             "train_rec_loss": 0.5 / e, "val_rec_loss": 0.6 / e, "train_cls_loss": 0.7 / e,
             "val_cls_loss": 0.8 / e, "val_acc": 0.2 * e} for e in range(1, epochs + 1)]


def band_columns(panel: np.ndarray) -> np.ndarray:
    """Columns of a panel mostly covered by the warm-up shading (matplotlib grey 0.9 = 230)."""
    grey = (np.abs(panel.astype(int) - 230) <= 3).all(axis=-1)
    return np.flatnonzero(grey.mean(axis=0) > 0.5)


def test_loss_curves_show_three_panels_with_both_splits_and_the_warm_up(tmp_path):
    img = load(write_loss_curves(tmp_path / "loss_curves.png", history(warmup=1)))
    assert img.shape == (256, 880, 3)                          # figsize (11, 3.2) at 80 dpi
    boxes = panels(img)
    assert grid(boxes) == (1, 3)                               # weighted loss, restoration MSE, CE
    inside = [crop(img, b) for b in boxes]
    for i, p in enumerate(inside):
        assert has_colour(p, C0) and has_colour(p, C1), f"panel {i}: training or validation curve missing"
        assert band_columns(p).size > 10, f"panel {i}: warm-up epochs not shaded"
    assert [has_colour(p, GREEN) for p in inside] == [False, False, True]   # validation accuracy, last panel
    # the restoration MSE has no value in warm-up epochs: no curve over the shaded band
    band, curve = band_columns(inside[1]), colour_columns(inside[1], C0)
    assert curve.min() > band.max()
    assert colour_columns(inside[2], C0).min() < band_columns(inside[2]).max()   # the CE curve is there

    img = load(write_loss_curves(tmp_path / "joint.png", history(warmup=0)))
    assert all(band_columns(crop(img, b)).size == 0 for b in panels(img))     # no warm-up, no shading


class _Val:
    """A validation dataset's ``take_batch``: raw cubes and row ids (the report corrupts them)."""

    def __init__(self, cubes):
        self.cubes = cubes

    def take_batch(self, n, batch_format="numpy"):
        return {"cube": self.cubes[:n], "row_id": np.arange(n)}


class _Invert(torch.nn.Module):
    """A stand-in model whose restoration is recognisable: 1 − input."""

    def forward(self, x):
        return 1.0 - x, torch.zeros(len(x), 2)


def cubes(n: int, shape=(32, 32, 16), seed: int = 3) -> np.ndarray:
    """Smooth random cubes with a little noise, in [0, 1] (float32)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(0, 1, d) for d in shape), indexing="ij")
    out = [0.5 + 0.3 * np.sin(6 * a * x + 5 * b * y + 4 * c * z + 6 * d) + 0.15 * rng.random(shape)
           for a, b, c, d in rng.random((n, 4))]
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def test_samples_show_original_corrupted_and_restored_of_each_cube(tmp_path):
    x = cubes(4)
    path = write_samples(Path(tmp_path / "samples.png"), _Invert(), _Val(x), load_config("cpu-tiny", []), n=4)
    img = load(path)
    assert img.shape == (640, 480, 3)                          # figsize (6, 2 per row) at 80 dpi
    boxes = panels(img)
    assert grid(boxes) == (4, 3)                               # a row per cube: original, corrupted, restored
    grey = img.astype(float).mean(axis=2)
    originals = []
    for r in range(4):
        row = [grey[t:b, l_:rr] for t, l_, b, rr in boxes[3 * r:3 * r + 3]]
        h, w = min(p.shape[0] for p in row), min(p.shape[1] for p in row)
        orig, corrupted, restored = (p[:h, :w] for p in row)
        assert all(p.std() > 5 for p in (orig, corrupted, restored))
        # the original panel is the cube's central axial slice (x across, y up: origin lower)
        small = np.asarray(Image.fromarray(orig.astype(np.uint8)).resize((32, 32), Image.BOX), float)
        want = 255 * np.flipud(x[r][:, :, 8].T)
        assert np.abs(small - want).mean() < 6 and np.corrcoef(small.ravel(), want.ravel())[0, 1] > 0.98
        assert np.abs(corrupted - orig).mean() > 3             # the corruption shows
        assert np.abs(restored - (255 - corrupted)).mean() < 3   # the model's output on the corrupted cube
        originals.append(small)
    assert all(np.abs(originals[i] - originals[j]).mean() > 5 for i in range(4) for j in range(i))


def test_samples_label_columns_rows_slice_and_corruption():
    """Each column says what it shows, each row which cube and which corruption operations, and the
    title the plane and slice: read from the figure itself, before it is saved."""
    from semgen_ray.train.report import SAMPLE_COLUMNS, samples_figure

    config = load_config("cpu-tiny", [])
    fig = samples_figure(_Invert(), _Val(cubes(3)), config, n=3)
    try:
        axes = np.asarray(fig.axes).reshape(3, 3)
        assert [ax.get_title() for ax in axes[0]] == list(SAMPLE_COLUMNS)
        assert [t.split(" (")[0] for t in SAMPLE_COLUMNS] == ["target", "input", "restored"]
        assert "axial slice z = 8 of 16" in fig._suptitle.get_text()
        ops = ("flip", "elastic", "local pixel shuffle", "nonlinear", "in painting", "out painting", "identity")
        for r, ax in enumerate(axes[:, 0]):
            label = ax.get_ylabel().replace("\n", " ")
            assert label.startswith(f"cube {r}:") and any(o in label for o in ops), label
        assert all(ax.get_images()[0].get_array().std() > 0.01 for ax in axes.ravel())   # no blank panel
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_samples_of_cubes_corrupted_on_the_data_workers_name_their_corruption():
    """Validation cubes corrupted by ``restoration_pairs`` (``train.corrupt_on: data``, fixed
    validation draws) come labelled with the operations those draws applied, replayed from the seeds."""
    from semgen_ray.data import restoration_pairs
    from semgen_ray.train.loop import VAL_EPOCH
    from semgen_ray.train.report import _samples
    from semgen_ray.transforms import make_corruption, sample_seed

    config = load_config("cpu-tiny", [])
    policy = config.train.corruption_policy
    raw = {"cube": cubes(6), "row_id": np.arange(5, 11)}
    streamed = restoration_pairs(dict(raw), policy=policy, run_seed=config.seed, epoch=VAL_EPOCH, id_column="row_id")

    class Streamed:
        def take_batch(self, n, batch_format="numpy"):
            return streamed

    _, inputs, _, labels = _samples(_Invert(), Streamed(), config, 6)
    np.testing.assert_array_equal(inputs, streamed["input"][:, 0])
    seeds = np.array([sample_seed(config.seed, VAL_EPOCH, i) for i in range(5, 11)], np.uint64)
    _, params = make_corruption(policy)(raw["cube"][:, None], seeds)
    want = [n.replace("_", " ").replace("+", " + ") for n in params.names()]
    assert labels == [f"cube {r}: {w}" for r, w in zip(range(5, 11), want)]
    assert len(set(want)) > 1                                   # the draws differ per cube
