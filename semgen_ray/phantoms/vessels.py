"""Branching pulmonary vessel and bronchial trees.

Each tree grows from a hilum by recursive bisection of a cloud of points sampled inside its lung: a
branch heads for the centroid of the points it supplies, then the points are split in two across
their longest axis and each half gets a child branch. Radii follow Murray's law on the number of
points supplied (r ∝ n^(1/3)), so vessels taper from the hilum to ~1.5 mm at the periphery and
fill the lung evenly. Everything is drawn from ``params.scan.vessel_seed``: the trees are a
deterministic function of the patient's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semgen_ray.phantoms.geometry import LEFT, RIGHT, Layout, lung_side

#: Attractor points per tree: sets the number of branches (about two segments per two points).
POINTS_PER_TREE = 480
#: Generations of the artery tree that are accompanied by a bronchus.
BRONCHUS_GENERATIONS = 3


@dataclass(frozen=True)
class Segments:
    """Tapered tube segments (mm, body frame)."""

    starts: np.ndarray  # (n, 3)
    ends: np.ndarray  # (n, 3)
    r0: np.ndarray  # (n,)
    r1: np.ndarray  # (n,)
    generation: np.ndarray  # (n,) 0 at the root

    @staticmethod
    def concat(parts: list["Segments"]) -> "Segments":
        return Segments(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                          ("starts", "ends", "r0", "r1", "generation")))

    def __len__(self) -> int:
        return len(self.r0)


@dataclass(frozen=True)
class Trees:
    """The vessel segments (arteries, veins, their mediastinal roots) and the airway segments."""

    vessels: Segments
    airways: Segments


def sample_lung_points(lay: Layout, side: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed inside one lung (body frame, mm)."""
    t = lay.params.thorax
    lo = np.array([-lay.cav_a if side == RIGHT else 0.0, lay.cav_yc - lay.cav_b,
                    min(t.dome_z_right, t.dome_z_left) - t.recess_depth * 1.6])
    hi = np.array([0.0 if side == RIGHT else lay.cav_a, lay.cav_yc + lay.cav_b,
                   max(t.apex_z_right, t.apex_z_left)])
    found: list[np.ndarray] = []
    total = 0
    for _ in range(50):
        cand = lo + (hi - lo) * rng.random((4 * n, 3))
        keep = cand[lung_side(lay, cand) == side]
        found.append(keep)
        total += len(keep)
        if total >= n:
            break
    pts = np.concatenate(found)[:n]
    if len(pts) < n:
        raise RuntimeError("could not sample points inside the lung: check the phantom parameters")
    return pts


def grow_tree(root: np.ndarray, points: np.ndarray, root_radius: float, rng: np.random.Generator,
              leaf_size: int = 2, max_generation: int = 16) -> Segments:
    """Grow a tree from ``root`` that supplies ``points`` by recursive bisection (see module doc)."""
    n_total = len(points)
    starts, ends, r0, r1, gen = [], [], [], [], []
    stack = [(np.asarray(root, dtype=np.float64), np.arange(n_total), 0)]
    while stack:
        start, idx, g = stack.pop()
        pts = points[idx]
        n = len(idx)
        radius = root_radius * (n / n_total) ** (1.0 / 3.0)
        centroid = pts.sum(axis=0) / n
        leaf = n <= leaf_size or g >= max_generation
        frac = 1.0 if leaf else 0.35 + 0.25 * rng.random()
        end = start + frac * (centroid - start)
        starts.append(start)
        ends.append(end)
        r0.append(radius)
        r1.append(radius * (0.8 if leaf else 0.93))
        gen.append(g)
        if leaf:
            continue
        centred = pts - centroid
        _, vecs = np.linalg.eigh(centred.T @ centred)
        proj = centred @ vecs[:, -1]  # along the longest axis
        order = np.argsort(proj)
        cut = int(round(n * (0.38 + 0.24 * rng.random())))
        cut = min(max(cut, 1), n - 1)
        stack.append((end, idx[order[:cut]], g + 1))
        stack.append((end, idx[order[cut:]], g + 1))
    return Segments(np.array(starts), np.array(ends), np.array(r0), np.array(r1), np.array(gen))


def _root_segments(tubes) -> Segments:
    parts = []
    for tube in tubes:
        a, b, ra, rb = tube.segments()
        parts.append(Segments(a, b, ra, rb, np.full(len(ra), -1)))
    return Segments.concat(parts)


def _bronchi(arteries: Segments, carina: np.ndarray, trachea_radius: float) -> Segments:
    """Bronchi running beside the first artery generations, plus the main bronchus to them."""
    keep = arteries.generation <= BRONCHUS_GENERATIONS
    s, e, ra = arteries.starts[keep], arteries.ends[keep], arteries.r0[keep]
    d = e - s
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    perp = np.cross(d, [0.0, 0.0, 1.0])
    flat = np.linalg.norm(perp, axis=1) < 0.3
    perp[flat] = np.cross(d[flat], [1.0, 0.0, 0.0])
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    perp *= np.sign(perp[:, 1:2] + 1e-9)  # bronchus posterior to its artery
    rb = 0.8 * ra
    shift = perp * (ra + rb + 1.5)[:, None]
    s2, e2 = s + shift, e + shift
    first = np.argmin(arteries.generation[keep])
    main = Segments(np.array([carina]), np.array([s2[first]]), np.array([0.68 * trachea_radius]),
                    np.array([rb[first]]), np.array([-1]))
    return Segments.concat([main, Segments(s2, e2, rb, 0.85 * rb, arteries.generation[keep])])


def build_trees(lay: Layout) -> Trees:
    """Grow the arteries, veins and bronchi of both lungs (deterministic in the vessel seed)."""
    params = lay.params
    rng = np.random.default_rng(params.scan.vessel_seed)
    vr = params.thorax.vessel_radius
    art_roots = [lay.pulmonary_roots[0].points[-1], lay.pulmonary_roots[1].points[-1]]
    vein_roots = [lay.pulmonary_roots[2].points[-1], lay.pulmonary_roots[3].points[-1]]
    vessels = [_root_segments(lay.pulmonary_roots)]
    airways = []
    carina = lay.trachea.points[-1]
    for side, art_root, vein_root in zip((RIGHT, LEFT), art_roots, vein_roots):
        arteries = grow_tree(art_root, sample_lung_points(lay, side, POINTS_PER_TREE, rng), vr, rng)
        veins = grow_tree(vein_root, sample_lung_points(lay, side, POINTS_PER_TREE, rng), 0.9 * vr, rng)
        vessels += [arteries, veins]
        airways.append(_bronchi(arteries, carina, params.thorax.trachea_radius))
    return Trees(Segments.concat(vessels), Segments.concat(airways))
