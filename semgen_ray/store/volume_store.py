"""The volume store: a Zarr v3 group of per-patient arrays plus a Parquet manifest.

Layout (README, "The volume store")::

    <store>/zarr.json                   group; attributes["semgen_ray"] = format, version, axes, orientation
    <store>/volumes/<patient_id>        int16 HU (CT) or float32 (MR), shape (X, Y, Z), LPS, chunked, Blosc/zstd
    <store>/labels/<patient_id>         optional uint8 label array, same shape and chunks
    <store>/manifest.parquet            one row per patient (semgen_ray.store.manifest)

A patient array is only valid once its attribute ``semgen_ray.complete`` is true. Writing a patient
stores voxels first and that attribute last, so an interrupted write never reads as valid.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semgen_ray import AXIS_ORDER, ORIENTATION
from semgen_ray.io.volume import Volume
from semgen_ray.store import layout, manifest
from semgen_ray.store.intensity import IntensityWarning, IntensityWindow, describe, mapping_of

Region = Sequence[tuple[int, int]]  # ((x0, x1), (y0, y1), (z0, z1)), half-open voxel ranges

#: chunk shape of new arrays unless one is given (``store.chunks``: the schema's default too; the
#: CPU presets set 64×64×32)
DEFAULT_CHUNKS = (128, 128, 64)
#: Chunk shape (rows, columns) of 2D images: a radiograph of up to 512 × 512 is one chunk.
IMAGE_CHUNKS = (512, 512)
#: 2D images are stored as uint16 display values: [0, 1] × this.
IMAGE_SCALE = 65535


#: the note on a patient stored without an ``ingest`` attribute that is kept as current
LEGACY_NOTE = ("stored by an older semgen_ray without its ingest settings: kept, as its source is unchanged "
               "and its attributes agree with the settings (--force rewrites it)")


class StoreError(Exception):
    """The store, or a patient in it, cannot be used as asked; the message says why."""


@dataclass(frozen=True)
class Freshness:
    """Whether a stored patient is what an ingest would store now (:meth:`VolumeStore.check_current`).

    Attributes:
        current: it is; an ingest may skip it.
        reason: why it is not current ("the source changed", "ingest.target_spacing changed: …"), or
            a note on a current patient (one stored by an older semgen_ray); "" otherwise.
        settings_changed: not current because of settings (ingest, store layout, intensity rule), the
            source being unchanged.
    """

    current: bool
    reason: str = ""
    settings_changed: bool = False


def _to_uri(uri) -> str:
    """Normalise a store location; ``file://`` URIs become plain paths (zarr's LocalStore)."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return uri.rstrip("/") or "/"


class VolumeStore:
    """Read and write patient volumes of one store. Create it with :func:`open_store`.

    Reads are safe from many processes. Writes of *different* patients may run in parallel (Ray
    tasks); the manifest is written by one process, the ingest driver.
    """

    def __init__(self, uri: str, mode: str = "r", chunks: Sequence[int] | None = None,
                 clevel: int = 3):
        import fsspec
        import zarr

        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', got {mode!r}")
        self.uri = _to_uri(uri)
        self.mode = mode
        self._chunks = None if chunks is None else tuple(int(c) for c in chunks)
        if self._chunks is not None and (len(self._chunks) != 3 or min(self._chunks) < 1):
            raise ValueError(f"chunks must be 3 positive ints, got {chunks!r}")
        self.clevel = int(clevel)
        self._fs, self._root_path = fsspec.core.url_to_fs(self.uri)
        self._manifest_path = self._fs.sep.join([self._root_path.rstrip(self._fs.sep), layout.MANIFEST])
        self._lock = threading.Lock()
        self._rows_cache: list[dict] | None = None
        self._computed_windows: dict[str, IntensityWindow] = {}  # patients stored without statistics

        if mode == "r":
            try:
                self._group = zarr.open_group(self.uri, mode="r")
            except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
                raise StoreError(f"no volume store at {self.uri}") from err
            self._check_format()
        else:
            exists = self._exists()
            self._group = zarr.open_group(self.uri, mode="w" if mode == "w" else "a", zarr_format=3)
            if mode == "w" and self._fs.exists(self._manifest_path):
                self._fs.rm(self._manifest_path)
            if exists and mode == "a":
                self._check_format()
            else:
                self._group.attrs[layout.ATTRS_KEY] = {
                    "format": layout.FORMAT_NAME,
                    "format_version": layout.FORMAT_VERSION,
                    "axis_order": "".join(AXIS_ORDER),
                    "orientation": ORIENTATION,
                }
            for name in (layout.VOLUMES, layout.LABELS):
                if name not in self._group:
                    self._group.create_group(name)

    # ------------------------------------------------------------------ structure
    def _exists(self) -> bool:
        import zarr

        try:
            zarr.open_group(self.uri, mode="r")
            return True
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False

    def _check_format(self) -> None:
        info = dict(self._group.attrs).get(layout.ATTRS_KEY)
        if not info or info.get("format") != layout.FORMAT_NAME:
            raise StoreError(f"{self.uri} is a Zarr group but not a semgen_ray volume store")
        if int(info.get("format_version", 0)) > layout.FORMAT_VERSION:
            raise StoreError(
                f"{self.uri} has store format version {info['format_version']}; this semgen_ray reads "
                f"up to {layout.FORMAT_VERSION}: upgrade semgen_ray"
            )

    def _array(self, group: str, patient_id: str):
        import zarr

        layout.check_patient_id(patient_id)
        try:
            return zarr.open_array(self.uri, path=f"{group}/{patient_id}", mode="r")
        except (FileNotFoundError, KeyError, zarr.errors.ArrayNotFoundError) as err:
            raise StoreError(f"patient {patient_id!r} is not in store {self.uri}") from err

    @property
    def chunks(self) -> tuple[int, int, int]:
        """The chunk shape (x, y, z) of this store's arrays: the one given to :func:`open_store`
        (new arrays get it), else the chunking of the volumes already stored (the first one's; an
        array thinner than a chunk along an axis is one chunk there, of its own size), else
        :data:`DEFAULT_CHUNKS` for a store without volumes. 2D images are chunked :data:`IMAGE_CHUNKS`."""
        if self._chunks is None:
            arrays = (self._array(layout.VOLUMES, pid) for pid in self.stored_ids())
            volume = next((a for a in arrays if a.ndim == 3), None)   # 2D images have chunks of their own
            self._chunks = tuple(int(c) for c in volume.chunks) if volume is not None else DEFAULT_CHUNKS
        return self._chunks

    def stored_ids(self) -> list[str]:
        """Every patient array in the store, complete or not (the manifest may lag after a crash)."""
        return sorted(self._group[layout.VOLUMES].array_keys())

    # ------------------------------------------------------------------ reading
    @property
    def patient_ids(self) -> list[str]:
        """Patients with a complete 3D volume, per the manifest (sorted; 2D images: :attr:`image_ids`)."""
        return sorted(r["patient_id"] for r in self.manifest_rows() if r["status"] == "ok" and manifest.is_volume(r))

    @property
    def image_ids(self) -> list[str]:
        """Complete 2D images (radiographs), per the manifest (sorted)."""
        return sorted(self.shapes(images=True))

    def shapes(self, images: bool = False) -> dict[str, tuple[int, ...]]:
        """Volume shape (X, Y, Z) by patient id, for complete 3D patients, from the manifest;
        ``images``: the (rows, columns) of the complete 2D images instead."""
        return {r["patient_id"]: tuple(int(v) for v in r["shape"]) for r in self.manifest_rows()
                if r["status"] == "ok" and manifest.is_volume(r) != images}

    def box_shapes(self, images: bool = False) -> dict[str, tuple[int, int, int]]:
        """Shape (X, Y, Z) by patient id as box tables and crops see it: the complete 3D volumes, or
        (``images``) the complete 2D images as (X, Y, 1) volumes (Semantic Genesis 2D on the 3D path)."""
        if not images:
            return self.shapes()
        return {pid: (*shape, 1) for pid, shape in self.shapes(images=True).items()}

    def read_flat(self, patient_id: str, region: Region | None = None,
                  normalize: bool | IntensityWindow = False) -> tuple[np.ndarray, dict[str, Any]]:
        """A 2D image as an (X, Y, 1) volume, and its metadata; ``region`` is a 3D box of that volume
        (see :meth:`read`)."""
        image, meta = self.read(patient_id, region=None if region is None else tuple(region)[:2], normalize=normalize)
        return image[..., None], meta

    def manifest_rows(self, refresh: bool = False) -> list[dict]:
        """The manifest as a list of row dicts (see :mod:`semgen_ray.store.manifest`)."""
        if self._rows_cache is None or refresh or self.mode != "r":
            self._rows_cache = manifest.read_rows(self._fs, self._manifest_path)
        return self._rows_cache

    def manifest_table(self):
        """The manifest as a ``pyarrow.Table``."""
        return manifest.to_table(self.manifest_rows())

    def meta(self, patient_id: str) -> dict[str, Any]:
        """A patient's metadata (spacing, origin, direction, modality, source, …) without voxels."""
        arr = self._array(layout.VOLUMES, patient_id)
        return self._meta_of(patient_id, arr)

    def _meta_of(self, patient_id: str, arr) -> dict[str, Any]:
        attrs = dict(arr.attrs).get(layout.ATTRS_KEY) or {}
        if not attrs.get("complete"):
            raise StoreError(
                f"patient {patient_id!r} in {self.uri} is incomplete (an interrupted write): re-run "
                "the ingest to rewrite it"
            )
        meta = dict(attrs)
        meta["shape"] = tuple(int(s) for s in arr.shape)
        meta["dtype"] = str(arr.dtype)
        meta["spacing"] = tuple(meta["spacing"])
        return meta

    def read(self, patient_id: str, region: Region | None = None,
             normalize: bool | IntensityWindow = False) -> tuple[np.ndarray, dict[str, Any]]:
        """Read a patient's volume (or a box of it).

        Args:
            patient_id: the array name.
            region: optional half-open voxel box ``((x0, x1), (y0, y1), (z0, z1))`` inside the volume.
            normalize: False returns stored values (int16 HU for CT). True applies the patient's
                recorded intensity mapping (:meth:`intensity_window`: CT HU [-1000, 1000] → [0, 1];
                MR per volume from its foreground percentiles unless ingest chose a fixed window),
                the same for the whole volume and for any region; an :class:`IntensityWindow`
                applies that window. Normalised arrays are float32.

        Returns:
            ``(array, meta)``: the array in (x, y, z) order and its metadata; ``meta["spacing"]``
            is in mm (x, y, z), ``meta["region"]`` the box that was read; when normalised,
            ``meta["window"]`` = (lo, hi) and ``meta["mapping"]`` the mapping applied.
        """
        arr = self._array(layout.VOLUMES, patient_id)
        meta = self._meta_of(patient_id, arr)
        sl = _region_slices(region, meta["shape"], patient_id)
        data = np.asarray(arr[sl])
        meta["region"] = tuple((s.start, s.stop) for s in sl)
        window = self.intensity_window(patient_id, normalize, meta)
        if window is not None:
            data = window.apply(data)
            meta["window"] = (window.lo, window.hi)
            meta["mapping"] = window.as_dict()
        return data, meta

    def intensity_window(self, patient_id: str, normalize: bool | IntensityWindow = True,
                         meta: dict | None = None) -> IntensityWindow | None:
        """The mapping a read with ``normalize`` applies to this patient (None for ``False``).

        ``True``: the mapping recorded when the patient was written (``meta["intensity"]``). A
        non-CT patient written before the statistics were recorded gets them computed here from its
        whole volume, once per store object, with an :class:`IntensityWarning`; persist them with
        :meth:`add_intensity_stats` (a store opened with ``mode="a"``) or by re-running the ingest,
        which rewrites such patients.
        """
        if normalize is False or normalize is None:
            return None
        if isinstance(normalize, IntensityWindow):
            return normalize
        if normalize is not True:
            raise ValueError(f"normalize must be True, False or an IntensityWindow, got {normalize!r}")
        meta = meta if meta is not None else self.meta(patient_id)
        window = mapping_of(meta.get("intensity"), meta["modality"])
        if window is not None:
            return window
        with self._lock:
            window = self._computed_windows.get(patient_id)
        if window is None:
            record = describe(np.asarray(self._array(layout.VOLUMES, patient_id)[...]), meta["modality"],
                              warn=False)
            window = IntensityWindow.from_dict(record)
            with self._lock:
                self._computed_windows[patient_id] = window
            warnings.warn(
                f"patient {patient_id!r} of store {self.uri} has no recorded intensity statistics (written "
                f"by an older semgen_ray): computed its mapping {window.as_dict()} from the whole volume "
                "for this session; store them once with open_store(uri, mode='a').add_intensity_stats() "
                "or by re-running the ingest", IntensityWarning, stacklevel=3)
        return window

    def has_label(self, patient_id: str) -> bool:
        layout.check_patient_id(patient_id)
        return patient_id in self._group[layout.LABELS].array_keys()

    def read_label(self, patient_id: str, region: Region | None = None) -> np.ndarray:
        """A patient's uint8 label array (or a box of it); StoreError if it has none."""
        meta = self.meta(patient_id)
        if not meta.get("has_label"):
            raise StoreError(f"patient {patient_id!r} has no label array")
        arr = self._array(layout.LABELS, patient_id)
        return np.asarray(arr[_region_slices(region, meta["shape"], patient_id)])

    def is_current(self, patient_id: str, source_sha256: str, mr_intensity: str | None = None,
                   mr_window: Sequence[float] | None = None, settings: dict | None = None,
                   check_layout: bool = False) -> bool:
        """True when the patient is stored completely from a source with this hash and, when given,
        with these settings (:meth:`check_current`, which also says why not)."""
        return self.check_current(patient_id, source_sha256, settings, mr_intensity, mr_window,
                                  check_layout).current

    def check_current(self, patient_id: str, source_sha256: str, settings: dict | None = None,
                      mr_intensity: str | None = None, mr_window: Sequence[float] | None = None,
                      check_layout: bool = False) -> Freshness:
        """Whether the stored patient is what an ingest of this source with these settings would
        store now, and if not, why.

        Args:
            source_sha256: the source's fingerprint; a different stored hash is never current.
            settings: the ingest settings that shape the stored array (``modality`` override,
                ``target_spacing``, ``uneven_spacing``; ``semgen_ray.ingest.runner.shaping_settings``),
                compared with the patient's ``ingest`` attribute. The attribute holds only the
                settings that applied to the patient (``uneven_spacing`` only for a DICOM series that
                had uneven slice spacing), so the others do not matter for it. None: not compared.
            mr_intensity, mr_window: a non-CT patient must carry intensity statistics recorded with
                this rule (and window for ``fixed``). None: not compared.
            check_layout: the array must be chunked as this store's :attr:`chunks` (clipped to its shape)
                and compressed at its ``clevel``.

        A patient written before the ``ingest`` attribute existed (an older semgen_ray) is compared
        on what its other attributes tell: the stored modality against a ``modality`` override, the
        stored spacing against a ``target_spacing``, its uneven-spacing note against
        ``uneven_spacing``. When they agree it counts as current, with a note in ``reason`` (it may
        have been stored with settings that nothing recorded: ``force`` rewrites it).
        """
        try:
            arr = self._array(layout.VOLUMES, patient_id)
            meta = self._meta_of(patient_id, arr)
        except StoreError as err:
            return Freshness(False, "incomplete" if "incomplete" in str(err) else "not stored")
        if meta.get("source_sha256") != source_sha256:
            return Freshness(False, "the source changed")
        if check_layout:
            chunks = IMAGE_CHUNKS if meta.get("kind") == "2d" else self.chunks
            want = tuple(min(int(c), int(s)) for c, s in zip(chunks, arr.shape))
            have = tuple(int(c) for c in arr.chunks)
            if have != want:
                return Freshness(False, f"store.chunks changed: the patient is chunked {list(have)}, "
                                        f"the store now asks {list(want)}", settings_changed=True)
            clevels = [int(c.clevel) for c in arr.compressors if getattr(c, "clevel", None) is not None]
            if clevels and clevels[0] != self.clevel:
                return Freshness(False, f"store.clevel changed: {clevels[0]} -> {self.clevel}",
                                 settings_changed=True)
        note = ""
        if settings is not None:
            recorded = meta.get("ingest")
            if recorded is None:
                recorded, why = _legacy_settings(meta, settings)
                if why:
                    return Freshness(False, f"{why} (stored by an older semgen_ray, without its ingest "
                                            "settings)", settings_changed=True)
                note = LEGACY_NOTE
            for key, value in sorted(recorded.items()):
                if _canonical(settings.get(key)) != _canonical(value):
                    return Freshness(False, f"ingest.{key} changed: {_show(key, value)} -> "
                                            f"{_show(key, settings.get(key))}", settings_changed=True)
        if mr_intensity is not None and meta["modality"] != "CT" and meta.get("kind") != "2d":
            record = meta.get("intensity")
            if not record:
                return Freshness(False, "no intensity statistics recorded (an older semgen_ray)",
                                 settings_changed=True)
            if record.get("rule") != mr_intensity:
                return Freshness(False, f"ingest.mr_intensity changed: {record.get('rule')} -> {mr_intensity}",
                                 settings_changed=True)
            if mr_intensity == "fixed" and _canonical(record["window"]) != _canonical(mr_window):
                return Freshness(False, f"ingest.mr_window changed: {_show('mr_window', record['window'])} -> "
                                        f"{_show('mr_window', mr_window)}", settings_changed=True)
        return Freshness(True, note)

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"store {self.uri} was opened read-only (mode='r')")

    def write(self, patient_id: str, volume: Volume, label: np.ndarray | None = None,
              split: str = "train", source_sha256: str = "", extra: dict | None = None,
              mr_intensity: str = "foreground_percentile",
              mr_window: Sequence[float] = (0.0, 4000.0), ingest_settings: dict | None = None) -> dict:
        """Store one patient atomically and return its manifest row (the manifest is not written).

        CT is stored as int16 HU (values are rounded and must fit int16), anything else as float32.
        Any previous version of the patient is replaced. The intensity statistics and the mapping
        reads will apply (CT: HU window; MR/OT: ``mr_intensity``, see
        :mod:`semgen_ray.store.intensity`) are computed here, once, and recorded with the patient;
        a mapping under which the volume is nearly blank adds a warning and an
        :class:`IntensityWarning`. ``ingest_settings``, the settings that shaped ``volume`` (the
        ingest's), are recorded as the ``ingest`` attribute that :meth:`check_current` compares.
        """
        self._require_writable()
        layout.check_patient_id(patient_id)
        data = np.asarray(volume.array)
        if data.ndim != 3:
            raise StoreError(f"volume of {patient_id!r} must be 3D, got shape {data.shape}")
        if volume.modality == "CT":
            if np.issubdtype(data.dtype, np.floating):
                data = np.rint(data)
            lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
            if lo < -32768 or hi > 32767:
                raise StoreError(f"CT values of {patient_id!r} span [{lo}, {hi}] HU: outside int16")
            data = data.astype(np.int16, copy=False)
        else:
            data = data.astype(np.float32, copy=False)
        intensity = describe(data, volume.modality, mr_intensity, tuple(mr_window))
        attrs = {
            "spacing": list(volume.spacing),
            "origin": list(volume.origin),
            "direction": list(volume.direction),
            "modality": volume.modality,
            "axis_order": "".join(AXIS_ORDER),
            "orientation": ORIENTATION,
            "source": volume.source,
            "warnings": [*volume.warnings, *intensity["warnings"]],
            "intensity": intensity,
            "extra": {**volume.extra, **(extra or {})},
        }
        return self._commit(patient_id, data, label, attrs, self.chunks, AXIS_ORDER, split, source_sha256,
                            ingest_settings)

    def write_image(self, patient_id: str, image, label: np.ndarray | None = None, split: str = "train",
                    source_sha256: str = "", extra: dict | None = None, ingest_settings: dict | None = None) -> dict:
        """Store one 2D image (an :class:`~semgen_ray.io.image2d.Image2D`, e.g. a radiograph) atomically,
        as :meth:`write` stores a volume, and return its manifest row (``kind`` ``2d``).

        Its [0, 1] display values are stored as uint16 (× :data:`IMAGE_SCALE`), dimensions
        (row, col), chunks :data:`IMAGE_CHUNKS`; a read with ``normalize=True`` gives them back
        (to 1/65535). ``label``: (rows, columns) uint8 values (e.g. nodule ids).
        """
        self._require_writable()
        layout.check_patient_id(patient_id)
        values = np.asarray(image.array, dtype=np.float64)
        if values.ndim != 2 or not np.isfinite(values).all():
            raise StoreError(f"image of {patient_id!r} must be a finite 2D array, got shape {values.shape}")
        data = np.rint(np.clip(values, 0.0, 1.0) * IMAGE_SCALE).astype(np.uint16)
        window = IntensityWindow(0.0, float(IMAGE_SCALE))
        attrs = {
            "kind": "2d",
            "spacing": list(image.pixel_spacing),
            "modality": image.modality,
            "axis_order": "rc",
            "source": image.source,
            "warnings": list(image.warnings),
            "intensity": {**window.as_dict(), "stats": None, "check": None, "warnings": []},
            "extra": {**image.extra, **(extra or {})},
        }
        return self._commit(patient_id, data, label, attrs, IMAGE_CHUNKS, ("row", "col"), split, source_sha256,
                            ingest_settings)

    def _commit(self, patient_id: str, data: np.ndarray, label: np.ndarray | None, attrs: dict, chunking,
                dimension_names, split: str, source_sha256: str, ingest_settings: dict | None) -> dict:
        """Write the label (if any), then the array, whose ``complete`` attribute commits the patient;
        the manifest row."""
        import zarr
        from zarr.codecs import BloscCodec

        if label is not None:
            label = np.asarray(label)
            if label.shape != data.shape:
                raise StoreError(f"label of {patient_id!r} has shape {label.shape}, volume {data.shape}")
            if label.size and (label.min() < 0 or label.max() > 255):
                raise StoreError(f"label of {patient_id!r} has values outside uint8")
            label = label.astype(np.uint8, copy=False)
        chunks = tuple(min(c, s) for c, s in zip(chunking, data.shape))
        compressor = BloscCodec(cname="zstd", clevel=self.clevel, shuffle="bitshuffle")

        def create(group: str, values: np.ndarray):
            arr = zarr.create_array(
                self.uri, name=f"{group}/{patient_id}", shape=values.shape, dtype=values.dtype,
                chunks=chunks, compressors=compressor, dimension_names=dimension_names,
                fill_value=0, overwrite=True, zarr_format=3,
                attributes={layout.ATTRS_KEY: {"complete": False}},
            )
            arr[...] = values
            return arr

        label_group = self._group[layout.LABELS]
        if label is not None:
            create(layout.LABELS, label)
        elif patient_id in label_group.array_keys():
            del label_group[patient_id]
        arr = create(layout.VOLUMES, data)
        vmin, vmax = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        attrs = {"complete": True, "patient_id": patient_id, **attrs, "source_sha256": source_sha256,
                 "split": split, "has_label": label is not None, "min": vmin, "max": vmax}
        if ingest_settings is not None:
            attrs["ingest"] = {str(k): _canonical(v) for k, v in sorted(ingest_settings.items())}
        arr.attrs[layout.ATTRS_KEY] = attrs  # the commit point
        return self.row_from_meta(patient_id, {**attrs, "shape": data.shape, "dtype": str(data.dtype)})

    @staticmethod
    def row_from_meta(patient_id: str, meta: dict) -> dict:
        row = manifest.empty_row(patient_id)
        row.update(
            status="ok", modality=meta["modality"], split=meta.get("split", "train"),
            shape=[int(s) for s in meta["shape"]], spacing=[float(s) for s in meta["spacing"]],
            dtype=meta["dtype"], has_label=bool(meta.get("has_label")), source=meta.get("source"),
            source_sha256=meta.get("source_sha256"), warnings="; ".join(meta.get("warnings", ())),
            intensity=json.dumps(meta["intensity"]) if meta.get("intensity") else None,
            updated_at=_dt.datetime.now(_dt.timezone.utc), kind=meta.get("kind", "3d"),
        )
        return row

    def add_intensity_stats(self, patient_ids: Iterable[str] | None = None, force: bool = False,
                            mr_intensity: str = "foreground_percentile",
                            mr_window: Sequence[float] = (0.0, 4000.0)) -> list[str]:
        """Record intensity statistics and mappings for patients stored without them (``force``:
        for every patient), from their stored voxels, and update the manifest. Returns the ids done.

        For stores written before the statistics existed; reads then need not compute them.
        """
        self._require_writable()
        done, rows = [], []
        for pid in (self.patient_ids if patient_ids is None else list(patient_ids)):
            arr = self._array(layout.VOLUMES, pid)
            meta = self._meta_of(pid, arr)
            if meta.get("intensity") and not force:
                continue
            record = describe(np.asarray(arr[...]), meta["modality"], mr_intensity, tuple(mr_window))
            attrs = dict(dict(arr.attrs)[layout.ATTRS_KEY])
            old = [w for w in attrs.get("warnings", []) if not w.startswith("intensity:")]
            attrs.update(intensity=record, warnings=[*old, *record["warnings"]])
            zarr_arr = self._writable_array(pid)
            zarr_arr.attrs[layout.ATTRS_KEY] = attrs
            rows.append(self.row_from_meta(pid, {**attrs, "shape": meta["shape"], "dtype": meta["dtype"]}))
            self._computed_windows.pop(pid, None)
            done.append(pid)
        if rows:
            self.update_manifest(rows)
        return done

    def set_split(self, patient_id: str, split: str) -> dict:
        """Change a stored patient's ``split`` attribute in place (its voxels stay) and return its
        manifest row (the manifest is not written)."""
        self._require_writable()
        arr = self._array(layout.VOLUMES, patient_id)
        meta = self._meta_of(patient_id, arr)
        attrs = {**dict(dict(arr.attrs)[layout.ATTRS_KEY]), "split": str(split)}
        self._writable_array(patient_id).attrs[layout.ATTRS_KEY] = attrs
        return self.row_from_meta(patient_id, {**attrs, "shape": meta["shape"], "dtype": meta["dtype"]})

    def _writable_array(self, patient_id: str):
        import zarr

        return zarr.open_array(self.uri, path=f"{layout.VOLUMES}/{patient_id}", mode="r+")

    def delete(self, patient_id: str) -> None:
        """Remove a patient's arrays (the manifest is not written)."""
        self._require_writable()
        layout.check_patient_id(patient_id)
        for name in (layout.VOLUMES, layout.LABELS):
            group = self._group[name]
            if patient_id in group.array_keys():
                del group[patient_id]

    def update_manifest(self, rows: Iterable[dict], remove: Iterable[str] = ()) -> None:
        """Merge rows into the manifest by patient id, drop the rows of ``remove`` (patients removed
        with :meth:`delete`), and write it atomically.

        New rows win, except that a failure of one source never replaces the ``ok`` row of the
        patient another source stored under the same id (the failure is still in the run's report).
        """
        self._require_writable()
        with self._lock:
            merged = {r["patient_id"]: r for r in manifest.read_rows(self._fs, self._manifest_path)}
            for row in rows:
                old = merged.get(row["patient_id"])
                if (old and old["status"] == "ok" and row.get("status") != "ok"
                        and old.get("source") != row.get("source")):
                    continue
                merged[row["patient_id"]] = {**manifest.empty_row(row["patient_id"]), **row}
            for patient_id in remove:
                merged.pop(patient_id, None)
            manifest.write_rows(self._fs, self._manifest_path, merged.values())
            self._rows_cache = None

    def rebuild_manifest(self) -> list[dict]:
        """Rewrite the manifest from the arrays themselves (after a crash lost manifest updates).

        Complete patients get an ``ok`` row; incomplete arrays a ``failed`` row; failed rows of
        patients that have no array are kept.
        """
        self._require_writable()
        old = {r["patient_id"]: r for r in manifest.read_rows(self._fs, self._manifest_path)}
        rows = {pid: r for pid, r in old.items() if r["status"] != "ok"}
        for pid in self.stored_ids():
            try:
                rows[pid] = self.row_from_meta(pid, self.meta(pid))
            except StoreError as err:
                rows[pid] = {**manifest.empty_row(pid), "status": "failed", "error": str(err),
                             "updated_at": _dt.datetime.now(_dt.timezone.utc)}
        manifest.write_rows(self._fs, self._manifest_path, rows.values())
        self._rows_cache = None
        return list(rows.values())

    def __repr__(self) -> str:
        return f"VolumeStore({self.uri!r}, mode={self.mode!r})"


def _canonical(value):
    """A setting as JSON stores and compares it: tuples become lists, numbers in them floats."""
    if isinstance(value, (list, tuple)):
        return [float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else v
                for v in value]
    return value


def _show(key: str, value) -> str:
    """A setting for a message: ``None`` says what it means (detected modality, native spacing)."""
    if value is None:
        return {"modality": "detected", "target_spacing": "native"}.get(key, "none")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{float(v):g}" for v in value) + "]"
    return str(value)


def _legacy_settings(meta: dict, settings: dict) -> tuple[dict, str]:
    """For a patient stored without an ``ingest`` attribute: the settings its other attributes
    show (``uneven_spacing`` from the reader's uneven-spacing note), or a reason it was not stored
    with ``settings`` (its modality is not the ``modality`` override, its spacing not the
    ``target_spacing``)."""
    modality = settings.get("modality")
    if modality is not None and meta["modality"] != modality:
        return {}, f"ingest.modality is {modality}, the patient is stored as {meta['modality']}"
    target = settings.get("target_spacing")
    if target is not None and not np.allclose(meta["spacing"], target, rtol=1e-6, atol=0.0):
        return {}, (f"ingest.target_spacing is {_show('target_spacing', target)}, the patient is stored at "
                    f"{_show('target_spacing', meta['spacing'])}")
    from semgen_ray.io.dicom import RESAMPLED_NOTE, UNEVEN_NOTE

    recorded = {}
    for note in meta.get("warnings", ()):
        if note.startswith(UNEVEN_NOTE):
            recorded["uneven_spacing"] = "resample" if RESAMPLED_NOTE in note else "warn"
    return recorded, ""


def _region_slices(region: Region | None, shape: Sequence[int], patient_id: str) -> tuple[slice, ...]:
    if region is None:
        return tuple(slice(0, int(s)) for s in shape)
    if len(region) != len(shape):
        raise StoreError(f"region must have {len(shape)} (start, stop) pairs, got {region!r}")
    names = AXIS_ORDER if len(shape) == 3 else ("row", "col")
    out = []
    for axis, ((lo, hi), size) in enumerate(zip(region, shape)):
        lo, hi = int(lo), int(hi)
        if not 0 <= lo < hi <= size:
            raise StoreError(
                f"region {tuple(region)} is outside patient {patient_id!r} of shape {tuple(shape)} "
                f"(axis {names[axis]})"
            )
        out.append(slice(lo, hi))
    return tuple(out)


def open_store(uri: str, mode: str = "r", **kwargs) -> VolumeStore:
    """Open a volume store by local path or fsspec URI (``file://``, ``s3://``, ``memory://``, …).

    Args:
        uri: where the store lives.
        mode: ``"r"`` read an existing store; ``"a"`` open or create for writing; ``"w"`` create,
            deleting any existing store at ``uri``.
        **kwargs: ``chunks`` for new arrays (default: those of the arrays already stored, else
            :data:`DEFAULT_CHUNKS` (128, 128, 64)) and their Blosc/zstd ``clevel``.

    Example:
        >>> store = open_store("phantom.zarr")            # doctest: +SKIP
        >>> array, meta = store.read(store.patient_ids[0])  # doctest: +SKIP
        >>> meta["spacing"]                                 # doctest: +SKIP
        (1.40625, 1.40625, 2.5)
    """
    return VolumeStore(uri, mode=mode, **kwargs)
