"""Lung nodules: their seeded draw (size, density, irregular shape, position in the lungs) and their
rasterisation with an instance label mask.

Shapes are spheres whose radius is modulated by low-order (degree 2–3) real spherical harmonics, so
nodules are lobulated rather than round; everything is evaluated on a bounding box around the nodule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semgen_ray.phantoms import geometry
from semgen_ray.phantoms.grid import DEFAULT_FOV_MM, Grid

if TYPE_CHECKING:
    from semgen_ray.phantoms.anatomy import PatientParams

KINDS = ("solid", "part-solid", "ground-glass")
N_HARMONICS = 10
#: Probability of 0, 1, 2, 3 nodules per patient.
COUNT_PROBS = (0.25, 0.35, 0.25, 0.15)
KIND_PROBS = (0.6, 0.15, 0.25)
DIAMETER_RANGE_MM = (3.0, 30.0)


@dataclass(frozen=True)
class NoduleParams:
    """One nodule (body-frame mm, HU).

    Attributes:
        center: centre (x, y, z), body frame.
        diameter_mm: nominal diameter (before the shape modulation).
        kind: "solid", "part-solid" or "ground-glass".
        hu: HU of the solid part (solid and part-solid) or of the ground glass.
        ggo_hu: HU of the ground-glass rim of a part-solid nodule (unused otherwise).
        core_fraction: radius of the solid core relative to the nodule (part-solid only).
        harmonics: coefficients of the radius modulation (`N_HARMONICS` values).
    """

    center: tuple[float, float, float]
    diameter_mm: float
    kind: str
    hu: float
    ggo_hu: float
    core_fraction: float
    harmonics: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"nodule kind must be one of {KINDS}, got {self.kind!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "NoduleParams":
        return cls(center=tuple(float(c) for c in data["center"]), diameter_mm=float(data["diameter_mm"]),
                   kind=str(data["kind"]), hu=float(data["hu"]), ggo_hu=float(data["ggo_hu"]),
                   core_fraction=float(data["core_fraction"]),
                   harmonics=tuple(float(h) for h in data["harmonics"]))


def harmonic_basis(nx, ny, nz) -> list:
    """Real spherical harmonics of degree 2 and 3 (unnormalised) on unit vectors."""
    return [
        nx * ny, ny * nz, nx * nz, 0.5 * (nx * nx - ny * ny), 0.5 * (3 * nz * nz - 1),
        nx * (nx * nx - 3 * ny * ny), ny * (3 * nx * nx - ny * ny), nz * (nx * nx - ny * ny),
        nx * (5 * nz * nz - 1) * 0.5, nz * (5 * nz * nz - 3) * 0.5,
    ]


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


_SHELL = _fibonacci_sphere(26)


def sample_nodules(rng: np.random.Generator, params: "PatientParams") -> tuple[NoduleParams, ...]:
    """Draw 0–3 nodules placed wholly inside the lungs, away from the hila and from each other."""
    lay = geometry.layout(params)
    count = int(rng.choice(len(COUNT_PROBS), p=COUNT_PROBS))
    lo_d, hi_d = DIAMETER_RANGE_MM
    z_limit = DEFAULT_FOV_MM[2] / 2.0 - 8.0  # keep nodules inside the default field of view
    nodules: list[NoduleParams] = []
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(np.log(lo_d), np.log(hi_d))))
        kind = KINDS[int(rng.choice(len(KINDS), p=KIND_PROBS))]
        irregular = rng.uniform(0.02, 0.08)
        harmonics = tuple(float(h) for h in irregular * rng.standard_normal(N_HARMONICS))
        if kind == "solid":
            hu, ggo = rng.uniform(0.0, 60.0), -1000.0
        elif kind == "part-solid":
            hu, ggo = rng.uniform(0.0, 50.0), rng.uniform(-600.0, -350.0)
        else:
            hu, ggo = rng.uniform(-650.0, -300.0), -1000.0
        core = float(rng.uniform(0.35, 0.65)) if kind == "part-solid" else 0.0
        radius = diameter / 2.0 * (1.0 + np.abs(harmonics).sum())
        centre = _place(rng, lay, radius, nodules, z_limit - radius)
        if centre is None:
            continue
        nodules.append(NoduleParams(center=tuple(float(c) for c in centre), diameter_mm=diameter, kind=kind,
                                    hu=float(hu), ggo_hu=float(ggo), core_fraction=core,
                                    harmonics=harmonics))
    return tuple(nodules)


def _place(rng, lay: geometry.Layout, radius: float, others, z_limit: float):
    """Rejection-sample a centre whose whole sphere (+2 mm) lies in one lung."""
    t = lay.params.thorax
    lo = np.array([-lay.cav_a, lay.cav_yc - lay.cav_b, min(t.dome_z_right, t.dome_z_left) - t.recess_depth])
    hi = np.array([lay.cav_a, lay.cav_yc + lay.cav_b, max(t.apex_z_right, t.apex_z_left)])
    z_shift = lay.params.body.z_shift
    for _ in range(300):
        c = lo + (hi - lo) * rng.random(3)
        if abs(c[2] + z_shift) > z_limit:
            continue
        if np.min(np.linalg.norm(lay.hila - c, axis=1)) < radius + 30.0:
            continue
        if any(np.linalg.norm(np.array(o.center) - c) < radius + o.diameter_mm / 2 + 10.0 for o in others):
            continue
        pts = np.vstack([c, c + (radius + 2.0) * _SHELL])
        side = geometry.lung_side(lay, pts)
        if side[0] != 0 and np.all(side == side[0]):
            return c
    return None


def paint_nodules(hu: np.ndarray, label: np.ndarray, grid: Grid, params: "PatientParams") -> list[dict]:
    """Draw the patient's nodules into ``hu`` (float32) and ``label`` (uint8 instance ids 1..n), in place.

    Nodules combine with the lung as ``max(lung, nodule)``, so vessels running through a ground-glass
    nodule stay visible. Returns, per nodule, a description measured on the grid.
    """
    h = grid.voxel_size
    th = np.deg2rad(params.body.roll_deg)
    cos, sin = np.cos(th), np.sin(th)
    out = []
    for k, nod in enumerate(params.nodules, start=1):
        centre_w = geometry.to_world(params, np.array([nod.center]))[0]
        r_nom = nod.diameter_mm / 2.0
        reach = r_nom * (1.0 + np.abs(nod.harmonics).sum()) + h
        box = grid.box(centre_w - reach, centre_w + reach)
        info = {"id": k, "kind": nod.kind, "diameter_mm": round(nod.diameter_mm, 2),
                "center_mm": [round(float(c), 2) for c in centre_w],
                "center_voxel": [int(round(v)) for v in grid.to_voxel([centre_w])[0]]}
        if box is not None:
            x, y, z = grid.box_coords(box)
            dxw, dyw, dz = x - centre_w[0], y - centre_w[1], z - centre_w[2]
            dx, dy = cos * dxw + sin * dyw, -sin * dxw + cos * dyw  # body-frame directions
            dist = np.sqrt(dx * dx + dy * dy + dz * dz).astype(np.float32)
            safe = np.maximum(dist, 1e-6)
            basis = harmonic_basis(dx / safe, dy / safe, dz / safe)
            r = r_nom * (1.0 + sum(c * b for c, b in zip(nod.harmonics, basis)))
            r = np.maximum(r, 0.4 * r_nom).astype(np.float32)
            alpha = np.clip(0.5 + (r - dist) / h, 0.0, 1.0)
            if nod.kind == "part-solid":
                core = np.clip(0.5 + (nod.core_fraction * r - dist) / h, 0.0, 1.0)
                value = nod.ggo_hu + core * (nod.hu - nod.ggo_hu)
            else:
                value = np.float32(nod.hu)
            view = hu[box]
            view += alpha * (np.maximum(view, value) - view)
            lab = label[box]
            lab[(dist <= r) & (lab == 0)] = k
        ci = tuple(int(round(v)) for v in info["center_voxel"])
        if all(0 <= c < n for c, n in zip(ci, grid.shape)):
            label[ci] = k  # a nodule smaller than a voxel still marks its centre voxel
        n_vox = int(np.count_nonzero(label[box] == k)) if box is not None else 0
        info["n_voxels"] = n_vox
        info["volume_mm3"] = round(n_vox * float(np.prod(grid.spacing)), 1)
        out.append(info)
    return out
