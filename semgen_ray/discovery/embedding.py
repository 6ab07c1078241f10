"""Patient embeddings from the trained auto-encoder (docs/method.md §1.3) with Ray Data batch inference.

:func:`embed_patients` reads whole scans with :func:`semgen_ray.data.volumes.read_volumes` and maps
them through :class:`Embedder`, a callable class run by a fixed pool of ``concurrency`` actors, each
loading the exported model once. The embedding is the global average pool of the bottleneck
(``AutoEncoder3D.embed``; 512-d at the reference width).

**File format** (:func:`save_embeddings` / :func:`load_embeddings`): one Parquet file, one row per
patient, columns ``patient_id`` (string) and ``embedding`` (``fixed_size_list<float32>[D]``), sorted
by patient id; the caller's metadata (JSON) is stored in the schema metadata under ``semgen_ray``,
together with ``dim`` and ``count``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = b"semgen_ray"


class EmbeddingError(ValueError):
    """Embeddings that cannot be used (non-finite values, inconsistent rows); the message names patients."""


class Embedder:
    """Ray Data callable class: ``{"volume", "patient_id"}`` batch → ``{"patient_id", "embedding"}``.

    Loads the exported auto-encoder once per actor (eval mode, on the GPU when ``use_gpu`` and CUDA is
    available) and runs ``model.embed`` under ``torch.no_grad``.
    """

    def __init__(self, model_dir: str, use_gpu: bool = False) -> None:
        import torch

        from semgen_ray import runfolder
        from semgen_ray.models import load_pretrained

        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        with runfolder.local_copy(model_dir) as local:  # an export on an object store: fetched here
            self.model = load_pretrained(local).to(self.device).eval()

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        volumes = np.stack([np.asarray(v, np.float32) for v in batch["volume"]])
        with torch.no_grad():
            x = torch.from_numpy(volumes).unsqueeze(1).to(self.device)
            emb = self.model.embed(x).float().cpu().numpy()
        return {"patient_id": np.asarray([str(p) for p in batch["patient_id"]], dtype=object),
                "embedding": emb.astype(np.float32, copy=False)}


def check_finite(ids: Sequence[str], emb: np.ndarray) -> None:
    """Raise :class:`EmbeddingError` naming the patients whose embedding has NaN or inf values."""
    bad = [ids[i] for i in np.flatnonzero(~np.isfinite(emb).all(axis=1))]
    if bad:
        more = f" … and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise EmbeddingError(f"non-finite embedding for {len(bad)} patient(s): {', '.join(bad[:10])}{more}; "
                             "check these scans and the auto-encoder weights")


def embed_patients(store_uri: str, model_dir: str | os.PathLike, volume_shape: Sequence[int] | None = None,
                   patient_ids: Sequence[str] | None = None, batch_size: int = 8, concurrency: int = 1,
                   num_gpus: float = 0, *, num_cpus: float = 1.0, read_cpus: float = 1.0,
                   ray_config=None) -> tuple[list[str], np.ndarray]:
    """One embedding per patient, sorted by patient id.

    Args:
        store_uri: the volume store.
        model_dir: the auto-encoder export (``train_autoencoder``'s ``model_dir``).
        volume_shape: whole-scan size (x, y, z); ``None``: the model card's input size. A size
            other than the card's is refused (the embedding depends on the resize).
        patient_ids: which patients (default: every complete patient of the store).
        batch_size: volumes per model call.
        concurrency: size of the actor pool (each actor holds one model).
        num_gpus: GPUs per actor; > 0 runs the model on CUDA.
        num_cpus: CPUs per actor; read_cpus: CPUs per read task.
        ray_config: passed to :func:`semgen_ray.runtime.init_ray` when Ray is not running.

    Returns:
        ``(ids, embeddings)``: the ids and a float32 ``(N, D)`` array, row ``i`` for ``ids[i]``.

    Raises:
        EmbeddingError: a non-finite embedding (names the patients) or a missing patient.
        ValueError: ``volume_shape`` differs from the model card's input size.
    """
    import ray.data

    from semgen_ray import runfolder
    from semgen_ray.data.volumes import read_volumes
    from semgen_ray.models import read_card
    from semgen_ray.runtime import init_ray

    model_dir = str(Path(model_dir).resolve()) if not runfolder.is_remote(model_dir) else str(model_dir)
    with runfolder.local_copy(model_dir) as local:
        card = read_card(local) or {}
    card_size = (card.get("input") or {}).get("size")
    if volume_shape is None:
        if card_size is None:
            raise ValueError(f"{model_dir}: the model card has no input size; pass volume_shape")
        volume_shape = card_size
    shape = tuple(int(s) for s in volume_shape)
    if card_size is not None and tuple(card_size) != shape:
        raise ValueError(f"volume_shape {list(shape)} differs from the auto-encoder's input size {card_size} "
                         f"({model_dir}/model_card.json)")
    init_ray(ray_config)
    ds = read_volumes(store_uri, shape, patient_ids, columns=("volume", "patient_id"), num_cpus=read_cpus)
    # the same patients share a model call every run: batched kernels (and batch-statistics norms)
    # then give the same numbers, and the neighbours do not move between identical runs
    ds.context.execution_options.preserve_order = True
    # max_restarts=0: a lost embedding actor fails this short step, which the discover stage redoes
    # (reusing the trained auto-encoder); Ray Data's default restarts make Ray's core worker print an
    # error line on every run (ray-project/ray#57733). Ray 2.60 has no named parameter for it, so it
    # goes through the deprecated ray_remote_args path, whose warning is kept off the console here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        out = ds.map_batches(Embedder, fn_constructor_kwargs={"model_dir": model_dir, "use_gpu": num_gpus > 0},
                             compute=ray.data.ActorPoolStrategy(size=int(concurrency)), batch_size=int(batch_size),
                             batch_format="numpy", num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)
    rows = out.take_all()
    rows.sort(key=lambda r: str(r["patient_id"]))
    ids = [str(r["patient_id"]) for r in rows]
    if patient_ids is not None and sorted(map(str, patient_ids)) != ids:
        missing = sorted(set(map(str, patient_ids)) - set(ids))
        raise EmbeddingError(f"embeddings missing or duplicated for patient(s) {missing[:10] or ids}")
    emb = np.stack([np.asarray(r["embedding"], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    check_finite(ids, emb)
    return ids, emb


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], emb: np.ndarray,
                    meta: Mapping[str, Any] | None = None) -> Path | str:
    """Write embeddings as Parquet (a local path or a URI; see the module docstring); rows are sorted by
    patient id.

    Raises:
        EmbeddingError: length mismatch, duplicate ids or non-finite values.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [str(p) for p in ids]
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise EmbeddingError(f"{len(ids)} ids but embeddings of shape {emb.shape}")
    if len(set(ids)) != len(ids):
        dup = sorted({p for p in ids if ids.count(p) > 1})
        raise EmbeddingError(f"duplicate patient id(s): {dup[:10]}")
    check_finite(ids, emb)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    ids = [ids[i] for i in order]
    emb = np.ascontiguousarray(emb[order])
    dim = emb.shape[1]
    values = pa.array(emb.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(values, dim)
    doc = {"dim": int(dim), "count": len(ids), "meta": dict(meta or {})}
    table = pa.table({"patient_id": pa.array(ids, type=pa.string()), "embedding": column})
    table = table.replace_schema_metadata({META_KEY: json.dumps(doc, default=str).encode()})
    from semgen_ray import runfolder

    if runfolder.is_remote(path):  # an object store: one PUT of the finished file (atomic there)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        runfolder.write_bytes(path, sink.getvalue().to_pybytes())
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """Read :func:`save_embeddings`' file: ``(ids, float32 (N, D) embeddings, meta)``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semgen_ray import runfolder

    table = pq.read_table(pa.BufferReader(runfolder.read_bytes(path)) if runfolder.is_remote(path) else path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    doc = json.loads(raw) if raw else {}
    ids = [str(p) for p in table.column("patient_id").to_pylist()]
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    emb = np.asarray(col.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), dim)
    return ids, emb, dict(doc.get("meta", {}))
