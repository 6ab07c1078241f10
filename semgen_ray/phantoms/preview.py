"""A PNG of axial, coronal and sagittal slices of a few phantom patients, or of their radiographs
(for the docs and for eyes).

Display conventions: lung window [-1000, 400] HU; axial slices radiological (patient anterior at the
top, patient right on the image left); coronal and sagittal slices with superior at the top;
radiographs as a PA chest film is read (:mod:`semgen_ray.phantoms.radiograph`).
"""

from __future__ import annotations

import io
from pathlib import Path

from semgen_ray.phantoms.generate import DEFAULT_SHAPE, generate_patient

WINDOW = (-1000.0, 400.0)


def save_preview(path: str | Path, indices: tuple[int, ...] = (0, 2, 5, 1),
                 cohort_seed: int = 0, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                 dpi: int = 72) -> Path:
    """Render patients ``indices`` and write one row of slices per patient to ``path``.

    The default indices show one patient of each habitus cluster of cohort 0 (athletic, slim,
    average, obese). Columns: three axial slices (lower, middle, upper thorax), a coronal slice
    through the middle of the lungs and a sagittal slice through the right lung. Nodule outlines
    are drawn in red.

    Returns:
        The path written.
    """
    from semgen_ray.figures import pyplot

    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = 5
    fig, axes = plt.subplots(len(indices), cols, figsize=(3.0 * cols, 3.0 * len(indices)), squeeze=False)
    for row, index in zip(axes, indices):
        vol, label, nodules = generate_patient(index, cohort_seed, shape)
        hu = vol.array
        sx, sy, sz = vol.spacing
        nx, ny, nz = hu.shape
        ks = [int(nz * f) for f in (0.3, 0.55, 0.8)]
        j = int(ny * 0.45)
        i = int(nx * 0.32)
        panels = [(hu[:, :, k].T, label[:, :, k].T, sy / sx, "upper", f"axial z={k}") for k in ks]
        panels.append((hu[:, j, :].T, label[:, j, :].T, sz / sx, "lower", f"coronal y={j}"))
        panels.append((hu[i, :, :].T, label[i, :, :].T, sz / sy, "lower", f"sagittal x={i}"))
        for ax, (img, lab, aspect, origin, title) in zip(row, panels):
            ax.imshow(img, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect, origin=origin,
                      interpolation="nearest")
            if lab.any():
                ax.contour(lab > 0, levels=[0.5], colors="red", linewidths=0.8, origin=origin)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        hab = vol.extra["habitus_name"]
        row[0].set_ylabel(f"patient {index} ({hab}, {nodules['count']} nod.)", fontsize=8)
    return _save_png(fig, path, dpi)


def save_radiographs(path: str | Path, indices: tuple[int, ...] = (0, 2, 5, 1), cohort_seed: int = 0,
                     shape: tuple[int, int, int] = DEFAULT_SHAPE, dpi: int = 72) -> Path:
    """The PA radiographs of patients ``indices`` side by side, nodule boxes in red; returns ``path``."""
    from semgen_ray.figures import pyplot
    from semgen_ray.phantoms.radiograph import BITS, phantom_radiograph

    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(indices), figsize=(3.5 * len(indices), 3.5), squeeze=False)
    for ax, index in zip(axes[0], indices):
        r = phantom_radiograph(index, cohort_seed, shape)
        ax.imshow(r.image, cmap="gray", vmin=0, vmax=2 ** BITS - 1, aspect=r.pixel_spacing[0] / r.pixel_spacing[1],
                  interpolation="nearest")
        for b in r.boxes:
            ax.add_patch(plt.Rectangle((b["col0"] - 0.5, b["row0"] - 0.5), b["col1"] - b["col0"],
                                       b["row1"] - b["row0"], fill=False, edgecolor="red", linewidth=1.5))
        ax.set_title(f"patient {index}: {len(r.boxes)} nodule(s)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save_png(fig, path, dpi)


def _save_png(fig, path: Path, dpi: int) -> Path:
    """``fig`` as a palette PNG of 127 grey levels and red (noise compresses badly; an adaptive palette
    would drop the thin red outlines)."""
    from PIL import Image

    from semgen_ray.figures import pyplot

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    pyplot().close(fig)
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for g in range(127) for v in (round(g * 255 / 126),) * 3] + [255, 0, 0])
    image = Image.open(buffer).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    return path


def build_parser():
    """The preview's command line (an ``argparse.ArgumentParser``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m semgen_ray.phantoms.preview",
                                description="Write a PNG of axial, coronal and sagittal slices of phantom "
                                            "patients (one habitus cluster per row), or of their radiographs.")
    p.add_argument("--out", required=True, metavar="PNG",
                   help="the PNG to write (the README's: docs/phantom_slices.png, from the repository root)")
    p.add_argument("--indices", type=int, nargs="+", default=[0, 2, 5, 1], metavar="I",
                   help="patients of the cohort to show, one row each (default 0 2 5 1)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                   help=f"voxels per patient (default {' '.join(map(str, DEFAULT_SHAPE))})")
    p.add_argument("--dpi", type=int, default=72, help="resolution (default 72)")
    p.add_argument("--radiographs", action="store_true",
                   help="the patients' PA chest radiographs side by side instead of CT slices (the README's: "
                        "docs/phantom_radiographs.png)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m semgen_ray.phantoms.preview --out PNG``: write the preview (the README's picture is
    ``--out docs/phantom_slices.png`` from the repository root). The output is always named: nothing
    is written into the current folder by default, and ``--help`` only prints the help."""
    args = build_parser().parse_args(argv)
    save = save_radiographs if args.radiographs else save_preview
    print(save(args.out, tuple(args.indices), args.seed, tuple(args.shape), args.dpi))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
