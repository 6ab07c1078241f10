"""Tissue classes of the phantom and their Hounsfield values.

The renderer first paints an integer tissue map, then looks the HU values up here, so the numbers a
README documents and the numbers the images contain come from one table.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue ids of the phantom's tissue map (uint8)."""

    AIR = 0
    TABLE = 1
    SKIN = 2
    FAT = 3  # subcutaneous fat
    MUSCLE = 4  # chest wall, intercostal, paraspinal and neck muscle
    MEDIASTINUM = 5  # mediastinal fat around the heart and great vessels
    LUNG = 6
    HEART = 7
    BLOOD_VESSEL = 8  # aorta, great vessels, superior vena cava (non-contrast blood)
    ESOPHAGUS = 9
    AIRWAY_WALL = 10
    AIRWAY_LUMEN = 11
    BONE_CORTICAL = 12
    BONE_TRABECULAR = 13
    CARTILAGE = 14  # costal cartilage
    DISC = 15  # intervertebral disc
    CSF = 16  # spinal canal: cord and cerebrospinal fluid
    LIVER = 17
    SPLEEN = 18
    STOMACH = 19  # fluid / food content
    GAS = 20  # gas in the stomach
    ABDOMEN = 21  # intra-abdominal fat and bowel below the diaphragm


#: Mean HU per tissue (non-contrast chest CT). LUNG is overridden per patient (``Thorax.lung_hu``).
TISSUE_HU: dict[Tissue, float] = {
    Tissue.AIR: -1000.0,
    Tissue.TABLE: -150.0,
    Tissue.SKIN: 30.0,
    Tissue.FAT: -100.0,
    Tissue.MUSCLE: 45.0,
    Tissue.MEDIASTINUM: -85.0,
    Tissue.LUNG: -850.0,
    Tissue.HEART: 40.0,
    Tissue.BLOOD_VESSEL: 40.0,
    Tissue.ESOPHAGUS: 35.0,
    Tissue.AIRWAY_WALL: 30.0,
    Tissue.AIRWAY_LUMEN: -1000.0,
    Tissue.BONE_CORTICAL: 750.0,
    Tissue.BONE_TRABECULAR: 250.0,
    Tissue.CARTILAGE: 120.0,
    Tissue.DISC: 85.0,
    Tissue.CSF: 20.0,
    Tissue.LIVER: 60.0,
    Tissue.SPLEEN: 48.0,
    Tissue.STOMACH: 25.0,
    Tissue.GAS: -1000.0,
    Tissue.ABDOMEN: -70.0,
}

#: Gain of the smooth texture field per tissue (HU per unit of the unit-variance field).
TEXTURE_HU: dict[Tissue, float] = {
    Tissue.LUNG: 22.0,
    Tissue.FAT: 6.0,
    Tissue.MUSCLE: 6.0,
    Tissue.MEDIASTINUM: 12.0,
    Tissue.LIVER: 5.0,
    Tissue.SPLEEN: 5.0,
    Tissue.ABDOMEN: 25.0,
    Tissue.BONE_TRABECULAR: 70.0,
    Tissue.BONE_CORTICAL: 60.0,
}

#: HU assigned to vessels inside the lungs (non-contrast blood).
VESSEL_HU = 40.0


def hu_lookup(lung_hu: float) -> np.ndarray:
    """Tissue id → mean HU table (float32, indexable by the uint8 tissue map)."""
    table = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, hu in TISSUE_HU.items():
        table[tissue] = hu
    table[Tissue.LUNG] = lung_hu
    return table


def texture_lookup() -> np.ndarray:
    """Tissue id → texture gain table (float32)."""
    table = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, gain in TEXTURE_HU.items():
        table[tissue] = gain
    return table
