"""The volume store: per-patient Zarr v3 arrays plus a Parquet manifest (README, "The volume store")."""

from semgen_ray.store.intensity import (
    CT_WINDOW, MR_WINDOW, IntensityWarning, IntensityWindow, default_window, store_card_entry,
)
from semgen_ray.store.layout import InvalidPatientId, check_patient_id, sanitize_patient_id
from semgen_ray.store.volume_store import Freshness, StoreError, VolumeStore, open_store

__all__ = [
    "CT_WINDOW", "MR_WINDOW", "IntensityWarning", "IntensityWindow", "default_window",
    "store_card_entry", "InvalidPatientId",
    "check_patient_id", "sanitize_patient_id", "Freshness", "StoreError", "VolumeStore", "open_store",
]
