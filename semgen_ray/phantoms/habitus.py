"""Latent body-type clusters of the phantom cohort.

Every patient is drawn from one of a few habitus clusters and then jittered around the cluster
centre. The clusters give the cohort the structure self-discovery relies on: patients of one cluster
look alike (body outline, fat, lung size, heart size, table height), so an auto-encoder embedding has
"similar patients" to find, and the cluster id recorded in the parameters is a ground truth for tests
of the neighbour search.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Habitus:
    """One body-type cluster: cluster centres (mm unless stated) and the cohort weight.

    Attributes:
        name: short label.
        weight: probability that a patient belongs to this cluster.
        half_width: half the body width (left-right) at mid-thorax.
        half_depth: half the body depth (anterior-posterior) at mid-thorax.
        fat_lateral: subcutaneous fat thickness at the flanks.
        fat_ap: subcutaneous fat thickness front and back.
        muscle: chest-wall muscle thickness.
        heart_scale: heart size relative to an average adult heart.
        dome_shift: diaphragm dome height offset (positive: higher domes, shorter lungs).
        thorax_length: apex height offset (positive: taller lungs).
        lung_hu: mean lung parenchyma HU.
        center_y: body centre offset along y, i.e. the table height (positive: posterior).
    """

    name: str
    weight: float
    half_width: float
    half_depth: float
    fat_lateral: float
    fat_ap: float
    muscle: float
    heart_scale: float
    dome_shift: float
    thorax_length: float
    lung_hu: float
    center_y: float


#: The cohort's clusters; the order defines ``PatientParams.habitus``.
HABITUS: tuple[Habitus, ...] = (
    Habitus("slim", 0.25, 135.0, 100.0, 5.0, 4.0, 8.0, 0.92, -12.0, 8.0, -875.0, 7.0),
    Habitus("average", 0.30, 152.0, 114.0, 13.0, 11.0, 12.0, 1.00, 0.0, 0.0, -850.0, 2.0),
    Habitus("athletic", 0.20, 162.0, 118.0, 8.0, 7.0, 21.0, 1.07, -5.0, 2.0, -860.0, -2.0),
    Habitus("obese", 0.25, 166.0, 136.0, 33.0, 29.0, 12.0, 1.12, 16.0, -6.0, -815.0, -9.0),
)

#: Per-patient jitter (standard deviation) around the cluster centre, same units as `Habitus`.
JITTER: dict[str, float] = {
    "half_width": 4.0,
    "half_depth": 3.5,
    "fat_lateral": 2.0,
    "fat_ap": 1.8,
    "muscle": 1.5,
    "heart_scale": 0.04,
    "dome_shift": 5.0,
    "thorax_length": 4.0,
    "lung_hu": 10.0,
    "center_y": 3.0,
}
