"""The pretraining report: loss curves and sample cubes (original / corrupted / restored) as PNGs.

``loss_curves.png``: training and validation loss per epoch (and the two terms, restoration MSE and
classification CE, with validation accuracy; classification warm-up epochs, which have no restoration
term, are shaded and left out of the restoration curve). ``samples.png``: the central axial slice of a few
validation cubes: the target (the original), the input (its fixed validation corruption, the
operations applied named per row) and the exported model's restoration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from semgen_ray.config.schema import SemGenConfig


def write_loss_curves(path: Path, history: list[dict]) -> Path:
    from semgen_ray.figures import pyplot

    plt = pyplot()
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
    """``(target, input, restored, labels)`` of the first ``n`` validation cubes: arrays (n, X, Y, Z) and
    per cube a row label (its manifest row and the corruption operations applied to it)."""
    import torch

    from semgen_ray.train.loop import VAL_EPOCH
    from semgen_ray.train.objectives import objective
    from semgen_ray.transforms import make_corruption, sample_seed

    batch = val_ds.take_batch(n, batch_format="numpy")
    t = config.train
    rows = [int(i) for i in batch["row_id"]] if "row_id" in batch else list(range(len(next(iter(batch.values())))))
    if "input" in batch:  # corrupted on the data workers: replay the draws of their recorded seeds
        x, y = batch["input"], batch["target"]
        seeds = (np.asarray(batch["seed"]).view(np.uint64) if "seed" in batch
                 else np.array([sample_seed(config.seed, VAL_EPOCH, i) for i in rows], np.uint64))
        params = make_corruption(t.corruption_policy).sample(np.shape(x)[2:], seeds)
        ops = [name.replace("_", " ").replace("+", " + ") for name in params.names()]
    else:
        cube = np.asarray(batch["cube"], np.float32)[:, None]
        if objective(t.objective).corrupts:
            corruption = make_corruption(t.corruption_policy)
            seeds = np.array([sample_seed(config.seed, VAL_EPOCH, i) for i in rows], np.uint64)
            x, params = corruption(cube, seeds)
            y = corruption.target(cube, params, deformed=t.target == "deformed")
            ops = [name.replace("_", " ").replace("+", " + ") for name in params.names()]
        else:
            x = y = cube
            ops = ["none (objective without corruption)"] * len(cube)
    model.eval()
    with torch.no_grad():
        inputs = torch.from_numpy(np.array(x, np.float32))
        if getattr(model, "spatial_dims", 3) == 2:  # flat cubes of 2D images: the 2D model sees (N, C, X, Y)
            restored = model(inputs[..., 0])[0][..., None]
        else:
            restored, _ = model(inputs)
    labels = [f"cube {r}: {o}" for r, o in zip(rows, ops)]
    return y[:, 0], np.asarray(x)[:, 0], restored.numpy()[:, 0], labels


#: the columns of ``samples.png``, left to right
SAMPLE_COLUMNS = ("target (original)", "input (corrupted)", "restored (model output)")


def samples_figure(model, val_ds, config: SemGenConfig, n: int = 4):
    """The matplotlib figure of ``samples.png`` (see :func:`write_samples`); the caller closes it."""
    import textwrap

    from semgen_ray.figures import axial_slice, pyplot

    plt = pyplot()
    target, inputs, restored, labels = _samples(model, val_ds, config, n)
    rows = len(target)
    depth = target.shape[-1]
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), dpi=80, squeeze=False)
    fig.suptitle(f"validation cubes, axial slice z = {depth // 2} of {depth} (x across, y up); "
                 f"{config.train.corruption} corruptions", fontsize=7)
    for r in range(rows):
        for c, (name, arr) in enumerate(zip(SAMPLE_COLUMNS, (target, inputs, restored))):
            ax = axes[r, c]
            ax.imshow(axial_slice(arr[r]), cmap="gray", vmin=0, vmax=1, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if r == 0:
                ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel("\n".join(textwrap.wrap(labels[r], 24)), fontsize=6)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def write_samples(path: Path, model, val_ds, config: SemGenConfig, n: int = 4) -> Path:
    """``samples.png``: per validation cube (a row, labelled with its manifest row and the corruption
    applied), the target, the corrupted input and the model's restoration, as the axial slice through
    the cube's middle (the slice and plane in the title)."""
    from semgen_ray.figures import pyplot

    fig = samples_figure(model, val_ds, config, n)
    fig.savefig(path)
    pyplot().close(fig)
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
