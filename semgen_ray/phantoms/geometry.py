"""Shape of a phantom patient as functions of body-frame coordinates (mm).

`layout` derives every landmark (rib cage, spine, heart, airway and vessel paths) from the drawn
parameters. The region functions below take broadcastable coordinate arrays, so the same code
evaluates a whole voxel grid (x, y as (X, Y) planes, z as a (Z,) axis) in the renderer and a cloud of
points (all (N,)) when nodules and vessel trees are placed inside the lungs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from semgen_ray.phantoms.anatomy import PatientParams

#: Sides: 1 = patient right (low x), 2 = patient left (high x); 0 = not lung.
RIGHT, LEFT = 1, 2


@dataclass(frozen=True)
class Tube:
    """A polyline with a radius per vertex (mm, body frame)."""

    points: np.ndarray  # (n, 3)
    radii: np.ndarray  # (n,)

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, start radii, end radii) of the n-1 segments."""
        return self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]


def _tube(points, radii) -> Tube:
    pts = np.asarray(points, dtype=np.float64)
    rad = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(pts),)).copy()
    return Tube(pts, rad)


@dataclass(frozen=True)
class Layout:
    """Derived geometry of one patient (mm, body frame). See `layout`."""

    params: "PatientParams"
    # body outline and subcutaneous fat (superellipses centred at the origin)
    body_a: float
    body_b: float
    fat_a: float
    fat_b: float
    # rib cage inner surface: ellipse (cav_a, cav_b) at (0, cav_yc), indented at the spine
    cav_a: float
    cav_b: float
    cav_yc: float
    cav_indent: float
    cav_indent_width: float
    cav_z_mid: float
    cav_z_top: float
    # spine
    vb_y: float
    vb_rx: float
    vb_ry: float
    canal_y: float
    canal_r: float
    spinous_length: float
    # lungs
    dome_xy: tuple[tuple[float, float], tuple[float, float]]  # right, left dome centres
    apex_xy: tuple[tuple[float, float], tuple[float, float]]
    hila: np.ndarray  # (2, 3) right, left
    # heart ellipsoid: centre, semi-axes, rotation (columns: heart axes in the body frame)
    heart_center: np.ndarray
    heart_axes: np.ndarray
    heart_rot: np.ndarray
    # tubes
    trachea: Tube
    esophagus: Tube
    mediastinal_vessels: tuple[Tube, ...]  # aorta, great vessels, SVC
    pulmonary_roots: tuple[Tube, ...]  # pulmonary arteries / veins from the heart to the hila
    table_y: float  # world y of the table top


def layout(params: "PatientParams") -> Layout:
    """Derive the landmarks of a patient from its parameters (pure, cheap)."""
    b_, t_, h_, s_ = params.body, params.thorax, params.heart, params.skeleton
    a, b = b_.half_width, b_.half_depth
    fat_a, fat_b = a - b_.fat_lateral, b - b_.fat_ap

    # Rib cage: lateral wall = fat + muscle + ribs; front = fat + pectoral + sternum; the back wall
    # holds the spine; beside it the lungs reach back a little behind the spinal canal.
    cav_a = a - b_.fat_lateral - 0.6 * b_.muscle - 8.0
    y_front = -b + b_.fat_ap + b_.muscle + 9.0
    canal_r = 7.5
    canal_y = b - b_.fat_ap - b_.back_muscle - 10.0 - canal_r
    vb_y = canal_y - canal_r - 2.0 - s_.vertebra_ry
    y_back = canal_y + 14.0  # the posterior gutters reach behind the spinal canal
    cav_yc = 0.5 * (y_front + y_back)
    cav_b = 0.5 * (y_back - y_front)
    cav_indent = max(0.0, y_back - (vb_y + 0.2 * s_.vertebra_ry))
    spinous_length = float(np.clip(b - b_.fat_ap - 6.0 - (canal_y + canal_r + 3.0), 8.0, 32.0))

    apex_top = max(t_.apex_z_right, t_.apex_z_left)
    dome_y = cav_yc + 0.1 * cav_b
    dome_xy = ((-0.45 * cav_a, dome_y), (0.45 * cav_a, dome_y))
    apex_xy = ((-0.45 * cav_a, cav_yc - 0.05 * cav_b), (0.45 * cav_a, cav_yc - 0.05 * cav_b))

    # Airways: trachea in front of the oesophagus, which lies in front of the spine.
    vb_front = vb_y - s_.vertebra_ry
    eso_r = 7.0
    eso_y = vb_front - eso_r - 2.0
    tr_r = t_.trachea_radius
    tr_y = eso_y - eso_r - 3.0 - tr_r
    car = t_.carina_z
    z_top = 260.0  # above any field of view: tubes leave through the top
    z_bottom = -260.0
    trachea = _tube([[-1.5, tr_y, z_top], [-1.5, tr_y, car + 30.0], [-1.0, tr_y + 1.0, car]],
                    [tr_r, tr_r, 0.9 * tr_r])
    hila = np.array([
        [-0.3 * cav_a, cav_yc + 0.08 * cav_b, car - 34.0],
        [0.3 * cav_a, cav_yc + 0.10 * cav_b, car - 30.0],
    ])

    # Heart: anterior, shifted to the patient's left, sitting on the left dome.
    hs = h_.scale
    heart_axes = np.array([54.0, 38.0, 45.0]) * hs
    heart_center = np.array([
        0.14 * cav_a + 6.0 + h_.offset_x,
        y_front + 0.9 * heart_axes[1] + 8.0 + h_.offset_y,
        t_.dome_z_left - 12.0 + 0.75 * heart_axes[2] + h_.offset_z,
    ])
    yaw, tilt = np.deg2rad(h_.yaw_deg), np.deg2rad(h_.tilt_deg)
    # long axis points to the patient's left, anterior (yaw) and inferior (tilt)
    u = np.array([np.cos(yaw) * np.cos(tilt), -np.sin(yaw) * np.cos(tilt), -np.sin(tilt)])
    v = np.array([np.sin(yaw), np.cos(yaw), 0.0])
    heart_rot = np.column_stack([u, v, np.cross(u, v)])
    heart_top = heart_center[2] + 0.8 * heart_axes[2]

    # Oesophagus down the posterior mediastinum to the stomach under the left dome.
    esophagus = _tube([[2.0, eso_y, z_top], [4.0, eso_y, car], [12.0, eso_y - 2.0, t_.dome_z_left + 5.0],
                       [0.35 * cav_a, cav_yc - 0.2 * cav_b, t_.dome_z_left - 40.0]], eso_r)

    # Aorta: ascending (right of midline, anterior), arch over the left bronchus, descending on the
    # left side of the vertebral bodies.
    ar = t_.aorta_radius
    dr = 0.8 * ar
    desc_x = s_.vertebra_rx + 0.6 * dr + 5.0
    desc_y = vb_y - 0.45 * s_.vertebra_ry
    aorta = _tube([
        [heart_center[0] - 22.0, heart_center[1] + 5.0, heart_center[2] + 0.2 * heart_axes[2]],
        [-12.0, tr_y - 24.0, car + 8.0],
        [-4.0, tr_y - 12.0, car + 28.0],
        [12.0, tr_y + 4.0, car + 30.0],
        [desc_x, desc_y - 4.0, car + 12.0],
        [desc_x, desc_y, car - 20.0],
        [desc_x - 4.0, desc_y - 2.0, z_bottom],
    ], [ar, ar, 0.95 * ar, 0.9 * ar, dr, dr, 0.9 * dr])
    great = (
        _tube([[-6.0, tr_y - 16.0, car + 34.0], [-16.0, tr_y - 16.0, car + 80.0],
               [-24.0, tr_y - 10.0, z_top]], [6.5, 6.0, 5.5]),
        _tube([[4.0, tr_y - 12.0, car + 36.0], [12.0, tr_y - 10.0, z_top]], 4.5),
        _tube([[13.0, tr_y - 2.0, car + 34.0], [28.0, tr_y + 4.0, car + 90.0],
               [45.0, tr_y + 6.0, z_top]], 5.5),
    )
    svc = _tube([[-30.0, tr_y - 18.0, z_top], [-24.0, tr_y - 22.0, car + 10.0],
                 [heart_center[0] - 40.0, heart_center[1] + 8.0, heart_top - 15.0]], 9.5)

    # Pulmonary trunk from the right ventricle up to its bifurcation, then to the hila; pulmonary
    # veins from the hila down to the left atrium (posterior heart).
    vr = t_.vessel_radius
    bif = np.array([10.0, tr_y - 14.0, car - 12.0])
    trunk_start = np.array([heart_center[0] - 5.0, heart_center[1] - 18.0, heart_top - 25.0])
    art_r = hila[0] + np.array([0.0, -6.0, 6.0])
    art_l = hila[1] + np.array([0.0, -5.0, 9.0])
    atrium = np.array([heart_center[0] - 12.0, heart_center[1] + 0.7 * heart_axes[1], heart_top - 20.0])
    vein_r = hila[0] + np.array([0.0, 6.0, -22.0])
    vein_l = hila[1] + np.array([0.0, 6.0, -22.0])
    roots = (
        _tube([trunk_start, bif, (bif + art_r) / 2 + [0.0, 4.0, 2.0], art_r],
              [1.5 * vr, 1.4 * vr, 1.2 * vr, vr]),
        _tube([bif, (bif + art_l) / 2 + [0.0, 0.0, 8.0], art_l], [1.4 * vr, 1.2 * vr, vr]),
        _tube([atrium, vein_r], [1.1 * vr, 0.9 * vr]),
        _tube([atrium, vein_l], [1.1 * vr, 0.9 * vr]),
    )
    return Layout(
        params=params, body_a=a, body_b=b, fat_a=fat_a, fat_b=fat_b,
        cav_a=cav_a, cav_b=cav_b, cav_yc=cav_yc, cav_indent=cav_indent,
        cav_indent_width=s_.vertebra_rx + 12.0, cav_z_mid=car, cav_z_top=apex_top + 20.0,
        vb_y=vb_y, vb_rx=s_.vertebra_rx, vb_ry=s_.vertebra_ry, canal_y=canal_y, canal_r=canal_r,
        spinous_length=spinous_length, dome_xy=dome_xy, apex_xy=apex_xy, hila=hila,
        heart_center=heart_center, heart_axes=heart_axes, heart_rot=heart_rot,
        trachea=trachea, esophagus=esophagus, mediastinal_vessels=(aorta, *great, svc),
        pulmonary_roots=roots, table_y=b_.center_y + b + 1.5,
    )


# ---------------------------------------------------------------------------------------------
# Frame changes


def to_local(params: "PatientParams", xw, yw):
    """World (scanner) in-plane coordinates → body frame (undo the patient's shift and roll)."""
    th = np.deg2rad(params.body.roll_deg)
    c, s = np.cos(th), np.sin(th)
    dx, dy = xw - params.body.center_x, yw - params.body.center_y
    return c * dx + s * dy, -s * dx + c * dy


def to_world(params: "PatientParams", pts: np.ndarray) -> np.ndarray:
    """Body-frame points (N, 3) → world points (N, 3)."""
    th = np.deg2rad(params.body.roll_deg)
    c, s = np.cos(th), np.sin(th)
    p = np.asarray(pts, dtype=np.float64)
    out = np.empty_like(p)
    out[..., 0] = params.body.center_x + c * p[..., 0] - s * p[..., 1]
    out[..., 1] = params.body.center_y + s * p[..., 0] + c * p[..., 1]
    out[..., 2] = p[..., 2] + params.body.z_shift
    return out


def from_world(params: "PatientParams", pts: np.ndarray) -> np.ndarray:
    """World points (N, 3) → body-frame points (N, 3)."""
    p = np.asarray(pts, dtype=np.float64)
    out = np.empty_like(p)
    out[..., 0], out[..., 1] = to_local(params, p[..., 0], p[..., 1])
    out[..., 2] = p[..., 2] - params.body.z_shift
    return out


# ---------------------------------------------------------------------------------------------
# Region functions (broadcastable; x, y in-plane body frame, z body frame)


def smoothstep(u):
    """Cubic ease from 0 (u ≤ 0) to 1 (u ≥ 1)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def superellipse_radius(x, y, a, b, back_exponent):
    """Normalised radius of a superellipse, exponent 2 in front (y < 0), ``back_exponent`` behind."""
    p = np.where(y > 0, back_exponent, 2.0)
    return (np.abs(x / a) ** p + np.abs(y / b) ** p) ** (1.0 / p)


def body_profile(lay: Layout, z):
    """Scale of the body outline along z (1 at mid-thorax, tapering towards the neck)."""
    taper = lay.params.body.cranial_taper
    return 1.0 - (1.0 - taper) * smoothstep((z - 60.0) / 110.0)


def cavity_radius(lay: Layout, x, y):
    """Normalised radius of the rib cage's inner surface (< profile inside), indented at the spine."""
    v = y - lay.cav_yc
    indent = lay.cav_indent * np.exp(-((x / lay.cav_indent_width) ** 2)) * (v > 0)
    return np.sqrt((x / lay.cav_a) ** 2 + ((v + indent) / lay.cav_b) ** 2)


def cavity_profile(lay: Layout, z):
    """Scale of the rib cage along z: widest at the diaphragm, slightly narrower at the carina, then
    narrowing to the thoracic inlet."""
    inlet = lay.params.thorax.inlet_scale
    below = 1.0 - 0.08 * smoothstep((z - lay.cav_z_mid + 130.0) / 130.0)
    u = (z - lay.cav_z_mid) / (lay.cav_z_top - lay.cav_z_mid)
    return below - (0.92 - inlet) * smoothstep(u) ** 0.7


def diaphragm_z(lay: Layout, x, y):
    """Height of the diaphragm surface (two domes, the right one higher, recesses at the rim)."""
    t = lay.params.thorax
    out = []
    for (dx, dy), dome in zip(lay.dome_xy, (t.dome_z_right, t.dome_z_left)):
        rho2 = ((x - dx) / (0.62 * lay.cav_a)) ** 2 + ((y - dy) / (0.95 * lay.cav_b)) ** 2
        out.append(dome - t.recess_depth * np.minimum(rho2, 1.6))
    w = 1.0 / (1.0 + np.exp(-x / 8.0))
    return (1.0 - w) * out[0] + w * out[1]


def apex_z(lay: Layout, x, y):
    """Height of the lung apices' domes above (x, y) (per side, ~55 mm radius of curvature)."""
    t = lay.params.thorax
    res = []
    for (ax, ay), top in zip(lay.apex_xy, (t.apex_z_right, t.apex_z_left)):
        res.append(top - ((x - ax) ** 2 + (y - ay) ** 2) / 110.0)
    return np.where(x < 0, res[0], res[1])


def mediastinum_halfwidth(lay: Layout, y, z):
    """Half-width of the central band between the lungs, by depth y and height z."""
    v = (y - lay.cav_yc) / lay.cav_b
    w = np.interp(v, [-1.2, -0.75, -0.35, 0.05, 0.5, 1.2], [4.0, 6.0, 12.0, 15.0, 17.0, 17.0])
    upper = 8.0 * smoothstep((z - lay.params.thorax.carina_z) / 50.0) * (v < 0.3)
    return (w + upper) * lay.params.thorax.mediastinum_scale


def in_spine_zone(lay: Layout, x, y, margin: float = 4.0):
    """Vertebral body plus a margin (posterior mediastinum / paravertebral tissue)."""
    return (x / (lay.vb_rx + margin)) ** 2 + ((y - lay.vb_y) / (lay.vb_ry + margin)) ** 2 < 1.0


def heart_quadratic(lay: Layout, x, y, z, margin: float = 0.0):
    """Quadratic form of the heart ellipsoid (< 1 inside), axes grown by ``margin`` mm."""
    d = np.stack(np.broadcast_arrays(x - lay.heart_center[0], y - lay.heart_center[1],
                                     z - lay.heart_center[2]), axis=-1)
    q = d @ lay.heart_rot  # coordinates along the heart's axes
    return (((q / (lay.heart_axes + margin)) ** 2).sum(axis=-1))


def segment_distance(px, py, pz, a, b):
    """Distance from points to segment a→b and the segment parameter t ∈ [0, 1] (broadcastable;
    keeps the dtype of the coordinate arrays)."""
    ax, ay, az = (float(v) for v in a)
    dx, dy, dz = (float(v) - w for v, w in zip(b, (ax, ay, az)))
    inv = 1.0 / max(dx * dx + dy * dy + dz * dz, 1e-12)
    ux, uy, uz = px - ax, py - ay, pz - az
    t = np.clip((ux * dx + uy * dy + uz * dz) * inv, 0.0, 1.0)
    ex, ey, ez = ux - t * dx, uy - t * dy, uz - t * dz
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


def inside_tubes(tubes, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether points (N, 3) lie within ``margin`` mm of any of the tubes."""
    out = np.zeros(len(pts), dtype=bool)
    for tube in tubes:
        for a, b, ra, rb in zip(*tube.segments()):
            dist, t = segment_distance(pts[:, 0], pts[:, 1], pts[:, 2], a, b)
            out |= dist < ra + (rb - ra) * t + margin
    return out


def lung_side(lay: Layout, pts: np.ndarray) -> np.ndarray:
    """Lung side of body-frame points (N, 3): 0 outside the lungs, `RIGHT` or `LEFT` inside.

    Uses exactly the region functions the renderer uses for the lung mask (before vessels, airways
    and nodules are drawn over it).
    """
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    inside = cavity_radius(lay, x, y) < cavity_profile(lay, z)
    inside &= (z > diaphragm_z(lay, x, y)) & (z < apex_z(lay, x, y))
    inside &= np.abs(x) >= mediastinum_halfwidth(lay, y, z)
    inside &= ~in_spine_zone(lay, x, y)
    inside &= heart_quadratic(lay, x, y, z, margin=HEART_MARGIN) >= 1.0
    inside[inside] &= ~inside_tubes(lay.mediastinal_vessels + (lay.esophagus, lay.trachea), pts[inside],
                                    margin=TUBE_MARGIN)
    return np.where(inside, np.where(x < 0, RIGHT, LEFT), 0).astype(np.int8)


#: Fat between the heart / mediastinal tubes and the lungs (mm).
HEART_MARGIN = 4.0
TUBE_MARGIN = 3.0
