"""Deterministic rendering of a phantom patient onto a voxel grid.

`render` is pure: the same parameters, shape and spacing always give the same arrays (textures, the
vessel tree and the noise come from seeds stored in the parameters). It paints an integer tissue map
(painter's order: body wall, rib cage contents, lungs, mediastinum, skeleton, airways), looks the HU
values up (`tissues.TISSUE_HU`), adds texture, blends in the vessel and bronchial trees and the
nodules with partial-volume edges, then adds correlated Gaussian noise and clips to int16.
Large regions are 2D fields in the body's cross-section compared against 1D profiles along z
(e.g. ``cavity_radius(x, y) < cavity_profile(z)``), so most masks cost one broadcast comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semgen_ray.phantoms import geometry as geo
from semgen_ray.phantoms.anatomy import PatientParams
from semgen_ray.phantoms.grid import Grid, default_spacing
from semgen_ray.phantoms.nodules import paint_nodules
from semgen_ray.phantoms.texture import smooth_noise
from semgen_ray.phantoms.tissues import VESSEL_HU, Tissue, hu_lookup, texture_lookup
from semgen_ray.phantoms.tubes import mask_segments, paint_segments, tube_segments
from semgen_ray.phantoms.vessels import build_trees

HU_MIN, HU_MAX = -1024, 3071
#: In-plane [1/4, 1/2, 1/4] blur applied after the noise (scanner point-spread, correlated noise);
#: it scales white noise by 0.375, so noise is drawn 1/0.375 times larger.
_BLUR_NOISE_GAIN = 0.375
_RIB_GAP = 1.5  # mm between the rib cage's inner surface (pleura) and the ribs
_N_RIBS = 12


@dataclass
class Rendering:
    """Everything `render_detailed` produces.

    Attributes:
        hu: (X, Y, Z) int16 Hounsfield units.
        label: (X, Y, Z) uint8 nodule instance ids (0 background, 1..n in ``params.nodules`` order).
        tissues: (X, Y, Z) uint8 `tissues.Tissue` ids before vessels and nodules were blended in.
        nodules: per nodule, a JSON-serialisable description measured on the grid.
        grid: the voxel grid.
    """

    hu: np.ndarray
    label: np.ndarray
    tissues: np.ndarray
    nodules: list[dict]
    grid: Grid


def render(params: PatientParams, shape: tuple[int, int, int] = (256, 256, 128),
           spacing: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render a patient: (HU int16 (X, Y, Z), nodule label uint8 (X, Y, Z)).

    Args:
        params: the patient (from `anatomy.sample_params`).
        shape: grid shape (x, y, z), LPS axis order.
        spacing: voxel size in mm; default keeps a 360×360×320 mm field of view.
    """
    out = render_detailed(params, shape, spacing)
    return out.hu, out.label


def render_detailed(params: PatientParams, shape: tuple[int, int, int] = (256, 256, 128),
                    spacing: tuple[float, float, float] | None = None) -> Rendering:
    """`render`, also returning the tissue map and the measured nodule descriptions."""
    shape = tuple(int(s) for s in shape)
    grid = Grid(shape, tuple(float(s) for s in (default_spacing(shape) if spacing is None else spacing)))
    canvas = _Canvas(params, grid)
    canvas.paint_tissues()
    hu = canvas.to_hu()
    label = np.zeros(shape, dtype=np.uint8)
    nodules = paint_nodules(hu, label, grid, params)
    _add_noise_and_blur(hu, params, grid)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    np.rint(hu, out=hu)
    hu16 = hu.astype(np.int16)
    for info in nodules:
        vox = hu16[label == info["id"]] if info["n_voxels"] else np.zeros(0)
        info["mean_hu"] = round(float(vox.mean()), 1) if vox.size else None
        info["median_hu"] = round(float(np.median(vox)), 1) if vox.size else None
    return Rendering(hu16, label, canvas.tissues, nodules, grid)


class _Canvas:
    """The tissue map under construction plus the coordinate fields shared by the painting steps."""

    def __init__(self, params: PatientParams, grid: Grid) -> None:
        self.params = params
        self.grid = grid
        self.lay = geo.layout(params)
        xw = grid.axis(0)[:, None]
        yw = grid.axis(1)[None, :]
        xl, yl = geo.to_local(params, xw, yw)
        self.x = xl.astype(np.float32)  # (X, Y) body frame
        self.y = yl.astype(np.float32)
        self.z = (grid.axis(2) - params.body.z_shift).astype(np.float32)  # (Z,)
        self.tissues = np.zeros(grid.shape, dtype=np.uint8)
        # set by _paint_body: inside the subcutaneous fat, rib-cage radius field and z profile,
        # inside the rib cage, diaphragm height, above the diaphragm
        self.wall = self.rc = self.cprof = self.cavity = self.dz = self.above = None

    # -- helpers -------------------------------------------------------------------------------
    def _paint(self, tissue: Tissue, where) -> None:
        np.copyto(self.tissues, np.uint8(tissue), where=where)

    def _world_tubes(self, tubes):
        return tube_segments(tubes, lambda p: geo.to_world(self.params, p))

    def _local_box(self, xlo, xhi, ylo, yhi, zlo=-np.inf, zhi=np.inf):
        """Grid box covering a body-frame box (the roll is small, so corners bound it)."""
        corners = np.array([[x, y, 0.0] for x in (xlo, xhi) for y in (ylo, yhi)])
        w = geo.to_world(self.params, corners)
        zs = self.params.body.z_shift
        lo = [w[:, 0].min(), w[:, 1].min(), zlo + zs]
        return self.grid.box(lo, [w[:, 0].max(), w[:, 1].max(), zhi + zs])

    # -- painting ------------------------------------------------------------------------------
    def paint_tissues(self) -> None:
        self._paint_table()
        self._paint_body()
        self._paint_abdomen()
        self._paint_lungs()
        self._paint_mediastinum()
        self._paint_spine()
        self._paint_ribs()
        self._paint_trachea()

    def _paint_table(self) -> None:
        yw = self.grid.axis(1)[None, :]
        xw = self.grid.axis(0)[:, None]
        top = self.lay.table_y - 2.0e-4 * xw**2
        table = (yw >= top) & (yw < top + 7.0)
        self.tissues[table] = Tissue.TABLE

    def _paint_body(self) -> None:
        lay, b = self.lay, self.params.body
        prof = geo.body_profile(lay, self.z)[None, None, :].astype(np.float32)
        rb = geo.superellipse_radius(self.x, self.y, lay.body_a, lay.body_b, b.back_exponent)[:, :, None]
        self._paint(Tissue.SKIN, rb < prof)
        self._paint(Tissue.FAT, rb < prof * (1.0 - 2.5 / lay.body_b))
        rf = geo.superellipse_radius(self.x, self.y, lay.fat_a, lay.fat_b, b.back_exponent)[:, :, None]
        self.wall = rf < prof  # inside the subcutaneous fat: muscle and everything deeper
        self._paint(Tissue.MUSCLE, self.wall)
        rc = geo.cavity_radius(lay, self.x, self.y)
        self.rc = rc
        cprof = geo.cavity_profile(lay, self.z).astype(np.float32)
        self.cprof = cprof
        self.cavity = (rc[:, :, None] < cprof[None, None, :]) & self.wall
        self.dz = geo.diaphragm_z(lay, self.x, self.y)
        self.above = self.z[None, None, :] > self.dz[:, :, None]
        self._paint(Tissue.MEDIASTINUM, self.cavity & self.above)
        self._paint(Tissue.ABDOMEN, self.cavity & ~self.above)

    def _ellipsoid(self, center, axes, within=None):
        """Mask of a body-frame axis-aligned ellipsoid, as (box, mask) on its z slab."""
        cx, cy, cz = center
        ax, ay, az = axes
        zsel = np.nonzero(np.abs(self.z - cz) < az)[0]
        if len(zsel) == 0:
            return None, None
        ks = slice(zsel[0], zsel[-1] + 1)
        q = ((self.x - cx) / ax) ** 2 + ((self.y - cy) / ay) ** 2
        mask = q[:, :, None] + (((self.z[ks] - cz) / az) ** 2)[None, None, :] < 1.0
        if within is not None:
            mask &= within[:, :, ks]
        return ks, mask

    def _paint_abdomen(self) -> None:
        lay, t, ab = self.lay, self.params.thorax, self.params.abdomen
        below = self.cavity & ~self.above
        v = (self.y - lay.cav_yc) / lay.cav_b
        liver2d = self.x < lay.cav_a * (ab.liver_extent * 0.5 * (1.0 - v) - 0.08)
        self._paint(Tissue.LIVER, below & liver2d[:, :, None])
        spleen_c = (0.62 * lay.cav_a, lay.cav_yc + 0.5 * lay.cav_b, t.dome_z_left - 30.0)
        ks, m = self._ellipsoid(spleen_c, (26.0, 45.0, 55.0), below)
        if ks is not None:
            np.copyto(self.tissues[:, :, ks], np.uint8(Tissue.SPLEEN), where=m)
        st_c = (0.3 * lay.cav_a, lay.cav_yc - 0.25 * lay.cav_b, t.dome_z_left - 42.0)
        st_ax = (42.0, 36.0, 42.0)
        ks, m = self._ellipsoid(st_c, st_ax, below & ~liver2d[:, :, None])
        if ks is not None:
            sub = self.tissues[:, :, ks]
            np.copyto(sub, np.uint8(Tissue.STOMACH), where=m)
            # supine patient: the gas cap floats anteriorly (low y), air-fluid level in a coronal plane
            gas = m & (self.y < st_c[1] - st_ax[1] + ab.stomach_gas)[:, :, None]
            np.copyto(sub, np.uint8(Tissue.GAS), where=gas)

    def _paint_lungs(self) -> None:
        lay = self.lay
        apex = geo.apex_z(lay, self.x, self.y)
        lung = self.cavity & self.above & (self.z[None, None, :] < apex[:, :, None])
        halfw = geo.mediastinum_halfwidth(lay, self.y[:, :, None], self.z[None, None, :])
        lung &= np.abs(self.x)[:, :, None] >= halfw
        lung &= ~geo.in_spine_zone(lay, self.x, self.y)[:, :, None]
        # heart with its fat, mediastinal vessels, oesophagus, trachea
        hbox, hq = self._heart_box(geo.HEART_MARGIN)
        if hbox is not None:
            lung[hbox] &= hq >= 1.0
        tubes = lay.mediastinal_vessels + (lay.esophagus, lay.trachea)
        mask_segments(lung, self.grid, *self._world_tubes(tubes), grow=geo.TUBE_MARGIN, value=False)
        self._paint(Tissue.LUNG, lung)

    def _heart_box(self, margin: float):
        lay = self.lay
        centre_w = geo.to_world(self.params, lay.heart_center[None])[0]
        reach = lay.heart_axes.max() + margin + 2.0
        box = self.grid.box(centre_w - reach, centre_w + reach)
        if box is None:
            return None, None
        xw, yw, zw = self.grid.box_coords(box)
        xl, yl = geo.to_local(self.params, xw, yw)
        q = geo.heart_quadratic(lay, xl, yl, zw - self.params.body.z_shift, margin)
        return box, q

    def _paint_mediastinum(self) -> None:
        lay = self.lay
        box, q = self._heart_box(0.0)
        if box is not None:
            zl = self.z[box[2]][None, None, :]
            heart = (q < 1.0) & (zl > self.dz[box[0], box[1]][:, :, None] - 6.0) & self.cavity[box]
            np.copyto(self.tissues[box], np.uint8(Tissue.HEART), where=heart)
        inside = np.zeros(self.grid.shape, dtype=bool)
        mask_segments(inside, self.grid, *self._world_tubes(lay.mediastinal_vessels))
        self._paint(Tissue.BLOOD_VESSEL, inside & self.wall)
        inside[:] = False
        mask_segments(inside, self.grid, *self._world_tubes([lay.esophagus]))
        self._paint(Tissue.ESOPHAGUS, inside & self.wall)

    def _paint_spine(self) -> None:
        lay, sk = self.lay, self.params.skeleton
        ylo = lay.vb_y - lay.vb_ry - 2.0
        yhi = lay.canal_y + lay.canal_r + 4.0 + lay.spinous_length
        box = self._local_box(-lay.canal_r - 30.0, lay.canal_r + 30.0, ylo, yhi)
        if box is None:
            return
        bx, by = box[0], box[1]
        x, y = self.x[bx, by], self.y[bx, by]
        sub = self.tissues[bx, by, :]
        pitch = sk.rib_pitch
        z_first = self._z_first_rib()
        phase = np.mod((z_first - self.z) / pitch, 1.0)  # 0 at the level of a rib head
        disc_half = 2.5 / pitch
        disc = (phase < disc_half) | (phase > 1.0 - disc_half)
        endplate = (phase < disc_half + 1.2 / pitch) | (phase > 1.0 - disc_half - 1.2 / pitch)

        def paint(tissue, m2, m1=None):
            m = m2[:, :, None] if m1 is None else m2[:, :, None] & m1[None, None, :]
            np.copyto(sub, np.uint8(tissue), where=m)

        vb = (x / lay.vb_rx) ** 2 + ((y - lay.vb_y) / lay.vb_ry) ** 2 < 1.0
        vb_in = (x / (lay.vb_rx - 2.0)) ** 2 + ((y - lay.vb_y) / (lay.vb_ry - 2.0)) ** 2 < 1.0
        paint(Tissue.BONE_CORTICAL, vb, ~disc)
        paint(Tissue.BONE_TRABECULAR, vb_in, ~endplate)
        paint(Tissue.DISC, vb, disc)
        rr = np.sqrt(x**2 + (y - lay.canal_y) ** 2)
        arch = (rr < lay.canal_r + 5.5) & (y > lay.canal_y - 0.4 * lay.canal_r)
        pedicle = (np.abs(x) > lay.canal_r - 1.0) & (np.abs(x) < lay.canal_r + 5.0) & (y > lay.vb_y) & (
            y < lay.canal_y)
        paint(Tissue.BONE_CORTICAL, arch | pedicle, (phase > 0.05) & (phase < 0.8))
        spin = (np.abs(x) < 3.5) & (y > lay.canal_y + lay.canal_r + 2.0) & (
            y < lay.canal_y + lay.canal_r + 3.0 + lay.spinous_length)
        paint(Tissue.BONE_CORTICAL, spin, (phase > 0.3) & (phase < 0.85))
        trans = (np.abs(y - lay.canal_y + 1.0) < 5.5) & (np.abs(x) > lay.canal_r + 2.0) & (
            np.abs(x) < lay.canal_r + 25.0)
        paint(Tissue.BONE_CORTICAL, trans, (phase > 0.12) & (phase < 0.45))
        paint(Tissue.CSF, rr < lay.canal_r)

    def _z_first_rib(self) -> float:
        t = self.params.thorax
        return min(t.apex_z_right, t.apex_z_left) - self.params.skeleton.first_rib_below_apex

    def _paint_ribs(self) -> None:
        """Ribs, costal cartilages, sternum and scapulae, in the shell just outside the rib cage."""
        lay, sk = self.lay, self.params.skeleton
        gx = np.gradient(self.rc, self.grid.spacing[0], axis=0)
        gy = np.gradient(self.rc, self.grid.spacing[1], axis=1)
        gnorm = np.sqrt(gx * gx + gy * gy) + 1e-6  # |grad| of the radius field: mm → radius units
        t, h = sk.rib_thickness, sk.rib_height
        outer = _RIB_GAP + t + 16.0
        # distance outside the rib cage (mm) on the shell where ribs and scapulae can be, slice by slice
        # (the shell is a thin ring of each slice)
        rc_over_g = self.rc / gnorm
        inv_g = 1.0 / gnorm
        parts = []
        for k, c in enumerate(self.cprof):
            d2 = rc_over_g - c * inv_g
            sel = (d2 > _RIB_GAP - 2.5) & (d2 < outer) & self.wall[:, :, k]
            i, j = np.nonzero(sel)
            parts.append((i, j, np.full(len(i), k), d2[i, j]))
        ix, iy, kk, d = (np.concatenate(p) for p in zip(*parts))
        x, y, z = self.x[ix, iy], self.y[ix, iy], self.z[kk]
        phi = np.arctan2(np.abs(x), y - lay.cav_yc) / np.pi  # 0 posterior, 1 anterior midline
        z_first = self._z_first_rib()
        u = (z_first - z - sk.rib_drop * phi**1.3) / sk.rib_pitch
        k = np.rint(u)
        dz = (u - k) * sk.rib_pitch
        k = k.astype(np.int64)
        phi_max = np.where(k < 7, 0.97, np.where(k < 10, 0.93 - 0.05 * (k - 7), 0.55))
        phi_cart = np.where(k < 7, 0.8, 0.72)
        rib = (np.abs(dz) < h / 2) & (k >= 0) & (k < _N_RIBS) & (phi <= phi_max) & (np.abs(x) > 24.0)
        rib &= (d > _RIB_GAP) & (d < _RIB_GAP + t)
        cortex = (np.abs(d - _RIB_GAP - t / 2) > t / 2 - 1.4) | (np.abs(dz) > h / 2 - 1.4)
        cart = phi > phi_cart
        bone = np.where(cortex, Tissue.BONE_CORTICAL, Tissue.BONE_TRABECULAR)
        tissue = np.where(cart, Tissue.CARTILAGE, bone)
        self.tissues[ix[rib], iy[rib], kk[rib]] = tissue[rib]
        # sternum: manubrium (wider) and body, anterior midline
        st_hi = z_first - 22.0
        st_lo = min(self.params.thorax.dome_z_right, self.params.thorax.dome_z_left) + 5.0
        half = np.where(z > st_hi - 50.0, 22.0, 14.0)
        st = (np.abs(x) < half) & (y < lay.cav_yc) & (z < st_hi) & (z > st_lo) & (d > _RIB_GAP - 2.5) & (
            d < _RIB_GAP + 9.0)
        st_cortex = (np.abs(x) > half - 1.5) | (d < _RIB_GAP - 1.0) | (d > _RIB_GAP + 7.5)
        self.tissues[ix[st], iy[st], kk[st]] = np.where(st_cortex[st], Tissue.BONE_CORTICAL,
                                                        Tissue.BONE_TRABECULAR)
        # scapulae: plates over the posterior-lateral ribs, upper thorax
        carina = self.params.thorax.carina_z
        sc = (phi > 0.18) & (phi < 0.42) & (z > carina - 60.0) & (z < z_first + 15.0)
        sc &= (d > _RIB_GAP + t + 7.0) & (d < _RIB_GAP + t + 12.0)
        sc_cortex = (d < _RIB_GAP + t + 8.3) | (d > _RIB_GAP + t + 10.7)
        self.tissues[ix[sc], iy[sc], kk[sc]] = np.where(sc_cortex[sc], Tissue.BONE_CORTICAL,
                                                        Tissue.BONE_TRABECULAR)

    def _paint_trachea(self) -> None:
        tr = self.lay.trachea
        segs = self._world_tubes([tr])
        wall = np.zeros(self.grid.shape, dtype=bool)
        mask_segments(wall, self.grid, *segs, grow=2.5)
        self._paint(Tissue.AIRWAY_WALL, wall & self.wall)
        wall[:] = False
        mask_segments(wall, self.grid, *segs)
        self._paint(Tissue.AIRWAY_LUMEN, wall & self.wall)

    # -- HU --------------------------------------------------------------------------------------
    def to_hu(self) -> np.ndarray:
        """HU (float32) from the tissue map, with texture, dependent lung density and the trees."""
        params, lay, grid = self.params, self.lay, self.grid
        t = self.tissues
        hu = hu_lookup(params.thorax.lung_hu)[t]
        rng = np.random.default_rng(params.scan.texture_seed)
        tex = smooth_noise(grid.shape, grid.spacing, 5.0, rng)
        tex *= texture_lookup()[t]
        hu += tex
        del tex
        lung = t == Tissue.LUNG
        v = (self.y - (lay.cav_yc - lay.cav_b)) / (2.0 * lay.cav_b)
        grad = (params.thorax.lung_gradient * geo.smoothstep(v)).astype(np.float32)
        hu += lung * grad[:, :, None]

        allowed = lung | (t == Tissue.MEDIASTINUM)
        trees = build_trees(lay)
        to_w = lambda p: geo.to_world(params, p)  # noqa: E731
        occ = np.zeros(grid.shape, dtype=np.float32)
        vs = trees.vessels
        paint_segments(occ, grid, to_w(vs.starts), to_w(vs.ends), vs.r0, vs.r1)
        occ *= allowed
        hu += occ * (np.float32(VESSEL_HU) - hu)
        aw = trees.airways
        starts, ends = to_w(aw.starts), to_w(aw.ends)
        occ[:] = 0.0
        paint_segments(occ, grid, starts, ends, aw.r0 + 0.6 + 0.15 * aw.r0, aw.r1 + 0.6 + 0.15 * aw.r1)
        occ *= allowed
        hu += occ * (np.float32(30.0) - hu)
        occ[:] = 0.0
        paint_segments(occ, grid, starts, ends, aw.r0, aw.r1)
        occ *= allowed | (t == Tissue.AIRWAY_WALL) | (t == Tissue.AIRWAY_LUMEN)
        hu += occ * (np.float32(-1000.0) - hu)
        return hu


def _blur_inplane(a: np.ndarray) -> np.ndarray:
    """[1/4, 1/2, 1/4] along x then y (edges replicate), in place."""
    for axis in (0, 1):
        src = a.copy()
        a *= 0.5
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(1, None), slice(None, -1)
        a[tuple(lo)] += 0.25 * src[tuple(hi)]
        a[tuple(hi)] += 0.25 * src[tuple(lo)]
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        a[tuple(first)] += 0.25 * src[tuple(first)]
        a[tuple(last)] += 0.25 * src[tuple(last)]
    return a


def _add_noise_and_blur(hu: np.ndarray, params: PatientParams, grid: Grid) -> None:
    rng = np.random.default_rng(params.scan.noise_seed)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= np.float32(params.scan.noise_sd / _BLUR_NOISE_GAIN)
    hu += noise
    del noise
    _blur_inplane(hu)
