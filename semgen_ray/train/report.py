"""The pretraining report: loss curves and sample cubes (original / corrupted / restored) as PNGs.

``loss_curves.png``: training and validation loss per epoch (and the two terms, restoration MSE and
classification CE, with validation accuracy; classification warm-up epochs, which have no restoration
term, are shaded and left out of the restoration curve). ``samples.png``: the central axial slice of a few
validation cubes: the original, its fixed validation corruption and the exported model's restoration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semgen_ray.config.schema import SemGenConfig


def write_loss_curves(path: Path, history: list[dict]) -> Path:
    from semgen_ray.discovery.montage import _pyplot

    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    warm = [h["epoch"] for h in history if h.get("phase") == "warmup"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=80)
    for ax, key, title in ((axes[0], "loss", "weighted loss"), (axes[1], "rec_loss", "restoration MSE"),
                           (axes[2], "cls_loss", "classification CE")):
        for split, marker in (("train", "o-"), ("val", "s-")):
            values = [np.nan if key == "rec_loss" and h.get("phase") == "warmup" else h[f"{split}_{key}"]
                      for h in history]
            ax.plot(epochs, values, marker, label="train" if split == "train" else "validation")
        if warm:
            ax.axvspan(min(warm) - 0.5, max(warm) + 0.5, color="0.9", zorder=0, label="classification warm-up")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].legend()
    acc = axes[2].twinx()
    acc.plot(epochs, [h["val_acc"] for h in history], "g:", label="val accuracy")
    acc.set_ylim(0, 1)
    acc.set_ylabel("val accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _samples(model, val_ds, config: SemGenConfig, n: int):
    """(original, corrupted, restored) arrays (n, X, Y, Z) of the first ``n`` validation cubes."""
    import torch

    from semgen_ray.train.loop import VAL_EPOCH
    from semgen_ray.train.objectives import corruption_overrides, objective
    from semgen_ray.transforms import make_corruption, sample_seed

    batch = val_ds.take_batch(n, batch_format="numpy")
    t = config.train
    if "input" in batch:
        x, y = batch["input"], batch["target"]
    else:
        cube = np.asarray(batch["cube"], np.float32)[:, None]
        if objective(t.objective).corrupts:
            corruption = make_corruption(t.corruption, **corruption_overrides(t.objective, t.corruption_overrides))
            seeds = np.array([sample_seed(config.seed, VAL_EPOCH, int(i)) for i in batch["row_id"]], np.uint64)
            x, params = corruption(cube, seeds)
            y = corruption.target(cube, params, deformed=t.target == "deformed")
        else:
            x = y = cube
    model.eval()
    with torch.no_grad():
        restored, _ = model(torch.from_numpy(np.array(x, np.float32)))
    return y[:, 0], np.asarray(x)[:, 0], restored.numpy()[:, 0]


def write_samples(path: Path, model, val_ds, config: SemGenConfig, n: int = 4) -> Path:
    from semgen_ray.discovery.montage import _axial, _pyplot

    plt = _pyplot()
    columns = _samples(model, val_ds, config, n)
    rows = len(columns[0])
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), dpi=80, squeeze=False)
    for r in range(rows):
        for c, (name, arr) in enumerate(zip(("original", "corrupted", "restored"), columns)):
            axes[r, c].imshow(_axial(arr[r]), cmap="gray", vmin=0, vmax=1, origin="lower")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out_dir: Path, history: list[dict], model, val_ds, config: SemGenConfig) -> Path:
    """Write ``loss_curves.png``, ``samples.png`` and ``history.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2, default=float))
    if history:
        write_loss_curves(out_dir / "loss_curves.png", history)
    write_samples(out_dir / "samples.png", model, val_ds, config)
    return out_dir
