"""A phantom patient's parameters, and the seeded draw that produces them.

All randomness of a patient is drawn here, in `sample_params`; `render.render` turns the parameters
into voxels deterministically (the vessel tree, textures and noise come from seeds stored in the
parameters). Lengths are in mm in the patient's body frame: x → patient Left, y → Posterior,
z → Superior (LPS), origin at the body centre in-plane and at the scanner isocentre along z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from semgen_ray.phantoms.habitus import HABITUS, JITTER
from semgen_ray.phantoms.nodules import NoduleParams, sample_nodules

#: Bumped when the meaning of a parameter or the renderer changes, so stored cohorts can be told apart.
PHANTOM_VERSION = 1


@dataclass(frozen=True)
class Body:
    """Body outline and wall (mm, degrees).

    Attributes:
        half_width, half_depth: semi-axes of the body outline at mid-thorax.
        fat_lateral, fat_ap: subcutaneous fat thickness at the flanks / front and back.
        muscle: chest-wall muscle thickness; back_muscle: extra thickness behind the lungs.
        back_exponent: superellipse exponent of the back half of the outline (flatter on the table).
        cranial_taper: outline scale at the top of the field of view relative to mid-thorax.
        center_x, center_y: position of the body centre in the scanner (world mm).
        roll_deg: small in-plane rotation of the patient on the table.
        z_shift: position of the patient along the table (world mm).
    """

    half_width: float
    half_depth: float
    fat_lateral: float
    fat_ap: float
    muscle: float
    back_muscle: float
    back_exponent: float
    cranial_taper: float
    center_x: float
    center_y: float
    roll_deg: float
    z_shift: float


@dataclass(frozen=True)
class Thorax:
    """Lungs, diaphragm, mediastinum and airways (mm, HU, body frame).

    Attributes:
        apex_z_right, apex_z_left: height of the lung apices.
        dome_z_right, dome_z_left: height of the diaphragm domes (the right dome is higher).
        recess_depth: how far below a dome the costophrenic recesses reach.
        carina_z: height of the tracheal bifurcation.
        inlet_scale: width of the thoracic inlet relative to the mid-thorax rib cage.
        mediastinum_scale: width of the mediastinum relative to average.
        trachea_radius: inner radius of the trachea.
        lung_hu: mean lung parenchyma HU (inspiration level).
        lung_gradient: HU increase of the lung from anterior to posterior (dependent density).
        aorta_radius: radius of the ascending aorta.
        vessel_radius: radius of the pulmonary arteries at the hila.
    """

    apex_z_right: float
    apex_z_left: float
    dome_z_right: float
    dome_z_left: float
    recess_depth: float
    carina_z: float
    inlet_scale: float
    mediastinum_scale: float
    trachea_radius: float
    lung_hu: float
    lung_gradient: float
    aorta_radius: float
    vessel_radius: float


@dataclass(frozen=True)
class Heart:
    """Heart ellipsoid: size, offset from its standard position (mm) and orientation (degrees)."""

    scale: float
    offset_x: float
    offset_y: float
    offset_z: float
    yaw_deg: float
    tilt_deg: float


@dataclass(frozen=True)
class Skeleton:
    """Spine, ribs and sternum (mm).

    Attributes:
        vertebra_rx, vertebra_ry: semi-axes of a vertebral body.
        rib_pitch: vertical distance between consecutive ribs (= vertebral height).
        rib_drop: how much lower a rib's anterior end lies than its posterior end.
        rib_height, rib_thickness: rib cross-section (along z / radially).
        first_rib_below_apex: distance from the lung apex down to the first rib's posterior end.
    """

    vertebra_rx: float
    vertebra_ry: float
    rib_pitch: float
    rib_drop: float
    rib_height: float
    rib_thickness: float
    first_rib_below_apex: float


@dataclass(frozen=True)
class Abdomen:
    """Upper-abdominal organs under the diaphragm (mm)."""

    stomach_gas: float  # depth of the gas cap of the stomach (0: none)
    liver_extent: float  # how far the left liver lobe reaches across the midline


@dataclass(frozen=True)
class Scan:
    """Acquisition: noise level and the seeds of the deterministic rendering steps."""

    noise_sd: float
    noise_seed: int
    texture_seed: int
    vessel_seed: int


@dataclass(frozen=True)
class PatientParams:
    """Everything needed to render one phantom patient; JSON-serialisable through `to_dict`.

    Attributes:
        habitus: index into `habitus.HABITUS` (the latent body-type cluster).
        habitus_name: the cluster's name.
        body, thorax, heart, skeleton, abdomen, scan: see their classes.
        nodules: the lung nodules (0–3).
        version: `PHANTOM_VERSION` of the code that drew the parameters.
    """

    habitus: int
    habitus_name: str
    body: Body
    thorax: Thorax
    heart: Heart
    skeleton: Skeleton
    abdomen: Abdomen
    scan: Scan
    nodules: tuple[NoduleParams, ...] = field(default_factory=tuple)
    version: int = PHANTOM_VERSION

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-serialisable; tuples become lists in JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PatientParams":
        """Inverse of `to_dict`, also accepting the lists a JSON round trip produces."""
        parts = {"body": Body, "thorax": Thorax, "heart": Heart, "skeleton": Skeleton,
                 "abdomen": Abdomen, "scan": Scan}
        kwargs = {name: kind(**data[name]) for name, kind in parts.items()}
        nodules = tuple(NoduleParams.from_dict(n) for n in data.get("nodules", ()))
        return cls(habitus=int(data["habitus"]), habitus_name=str(data["habitus_name"]),
                   nodules=nodules, version=int(data.get("version", PHANTOM_VERSION)), **kwargs)


def patient_rng(cohort_seed: int, index: int) -> np.random.Generator:
    """The random generator of patient ``index`` of cohort ``cohort_seed`` (independent streams)."""
    if cohort_seed < 0 or index < 0:
        raise ValueError(f"cohort_seed and index must be >= 0, got {cohort_seed}, {index}")
    return np.random.default_rng(np.random.SeedSequence([int(cohort_seed), int(index)]))


def _floats(cls, **values):
    """Build a dataclass with plain Python floats (no numpy scalars in the JSON dict)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: float(v) for k, v in values.items() if k in names})


def sample_params(cohort_seed: int, index: int) -> PatientParams:
    """Draw the parameters of patient ``index`` of cohort ``cohort_seed``.

    The patient's habitus cluster is drawn first, then every shape parameter is jittered around the
    cluster centre, then the nodules are placed inside the lungs that these parameters define.

    Args:
        cohort_seed: seed of the whole cohort.
        index: patient number within the cohort.

    Returns:
        The patient's parameters; the same arguments always give equal parameters.

    Example:
        >>> p = sample_params(0, 3)
        >>> p == sample_params(0, 3)
        True
    """
    rng = patient_rng(cohort_seed, index)
    weights = np.array([h.weight for h in HABITUS])
    k = int(rng.choice(len(HABITUS), p=weights / weights.sum()))
    hab = HABITUS[k]

    def jit(name: str, low: float = -np.inf) -> float:
        return float(max(low, getattr(hab, name) + JITTER[name] * rng.standard_normal()))

    normal = rng.normal
    uniform = rng.uniform
    half_width = min(jit("half_width"), 172.0)  # with |center_x| <= 6 the body stays in a 360 mm FOV
    half_depth = jit("half_depth")
    muscle = jit("muscle", 4.0)
    body = _floats(
        Body,
        half_width=half_width,
        half_depth=half_depth,
        fat_lateral=jit("fat_lateral", 2.0),
        fat_ap=jit("fat_ap", 2.0),
        muscle=muscle,
        back_muscle=14.0 + 0.6 * muscle + normal(0, 2.0),
        back_exponent=uniform(2.3, 2.9),
        cranial_taper=uniform(0.9, 0.97),
        center_x=float(np.clip(normal(0, 3.0), -6.0, 6.0)),
        center_y=jit("center_y"),
        roll_deg=normal(0, 2.0),
        z_shift=normal(0, 5.0),
    )

    dome_shift = jit("dome_shift")
    length = jit("thorax_length")
    dome_right = -84.0 + dome_shift + normal(0, 3.0)
    apex_right = 120.0 + length + normal(0, 3.0)
    thorax = _floats(
        Thorax,
        apex_z_right=apex_right,
        apex_z_left=apex_right + normal(2.0, 2.5),
        dome_z_right=dome_right,
        dome_z_left=dome_right - uniform(10.0, 22.0),
        recess_depth=uniform(38.0, 55.0),
        carina_z=36.0 + 0.3 * length + 0.2 * dome_shift + normal(0, 4.0),
        inlet_scale=uniform(0.6, 0.72),
        mediastinum_scale=uniform(0.85, 1.15),
        trachea_radius=uniform(7.5, 10.0),
        lung_hu=jit("lung_hu"),
        lung_gradient=uniform(20.0, 60.0),
        aorta_radius=uniform(12.5, 16.0) * (1.0 + 0.1 * (hab.heart_scale - 1.0)),
        vessel_radius=uniform(6.0, 7.5),
    )
    heart = _floats(
        Heart,
        scale=jit("heart_scale", 0.75),
        offset_x=normal(0, 4.0),
        offset_y=normal(0, 3.0),
        offset_z=normal(0, 4.0),
        yaw_deg=normal(32.0, 5.0),
        tilt_deg=normal(18.0, 5.0),
    )
    skeleton = _floats(
        Skeleton,
        vertebra_rx=uniform(17.5, 21.5),
        vertebra_ry=uniform(13.5, 16.5),
        rib_pitch=uniform(22.0, 26.0),
        rib_drop=uniform(70.0, 95.0),
        rib_height=uniform(9.0, 12.0),
        rib_thickness=uniform(6.0, 8.5),
        first_rib_below_apex=uniform(4.0, 12.0),
    )
    abdomen = _floats(
        Abdomen,
        stomach_gas=max(0.0, normal(10.0, 8.0)),
        liver_extent=uniform(0.1, 0.45),
    )
    seeds = rng.integers(0, 2**31 - 1, size=3)
    scan = Scan(noise_sd=float(uniform(10.0, 25.0)), noise_seed=int(seeds[0]),
                texture_seed=int(seeds[1]), vessel_seed=int(seeds[2]))
    params = PatientParams(habitus=k, habitus_name=hab.name, body=body, thorax=thorax, heart=heart,
                           skeleton=skeleton, abdomen=abdomen, scan=scan)
    return replace(params, nodules=sample_nodules(rng, params))
