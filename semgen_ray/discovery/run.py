"""The self-discovery stage end to end (docs/method.md §1-§2; ``python -m semgen_ray.discover``).

1. train the auto-encoder on whole scans (Ray Train) and embed every patient (Ray Data actors);
2. index the train and validation embeddings (HNSW or exact; ``auto`` by the cost model of
   :func:`semgen_ray.discovery.neighbours.choose_index`, its estimates recorded) and record recall
   against exact search;
3. per class: a fresh reference patient, a coordinate that passes the foreground test and keeps
   ``min_distance`` from the earlier classes' coordinates, its K train / K_val validation neighbours,
   and crop boxes at that coordinate in each (resolutions 1-3; ``coordinates: body_box`` maps it into
   each neighbour's body box);
4. write the pattern manifest, a montage per class and a distance plot.

Every artefact goes to the output directory, a local folder or a URI (:mod:`semgen_ray.runfolder`;
hnswlib's index and the PNGs are written locally and uploaded); ``discovery.json`` records what was
done (method, recall, neighbour purity on the phantom cohort, for the class references and for every
train patient as a reference, against chance, timings per step; the auto-encoder's epochs, early stop,
best epoch and validation loss, and its last epoch's learning rate, Ray Train workers, and training scans
and batches, all workers together).

Finished work is reused, keyed by hashes of what produced it (reuse records, :mod:`semgen_ray.reuse`):
a finished run with the same config hash and an unchanged pattern manifest returns its record;
otherwise the auto-encoder export (``autoencoder.json``: key of store, splits, model and training
options, seed; the export unchanged) and the embeddings (keyed by the export they came from) are
reused and only the cheap steps re-run. ``force=True`` redoes everything, and first deletes those records
(and the pattern manifest), so a forced run that is interrupted is never taken for a finished one.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from semgen_ray.config import to_dict
from semgen_ray.config.schema import SemGenConfig

logger = logging.getLogger(__name__)


class DiscoveryError(RuntimeError):
    """Self-discovery cannot run on this store/config; the message says why and what to change."""


def _split_ids(rows: list[dict]) -> tuple[list[str], list[str]]:
    ok = [r for r in rows if r["status"] == "ok"]
    modalities = sorted({r["modality"] for r in ok})
    if len(modalities) > 1:
        counts = {m: sum(r["modality"] == m for r in ok) for m in modalities}
        raise DiscoveryError(
            f"the store mixes modalities {modalities} ({', '.join(f'{n} {m}' for m, n in counts.items())} "
            "patients): self-discovery compares whole scans of one modality, so ingest the scans of one "
            "modality into a store of their own (a CSV list of only those scans, or only their folders, "
            "with --out NEW_STORE) and pass that store"
        )
    train = sorted(r["patient_id"] for r in ok if r["split"] == "train")
    val = sorted(r["patient_id"] for r in ok if r["split"] == "val")
    return train, val


def _check_cohort_size(d, n_train: int, n_val: int, store_uri: str) -> None:
    """The smallest cohort discovery runs on: ``max(k_train, num_classes)`` train patients (each class
    has its own reference patient, which is its own first neighbour) and ``k_val`` validation
    patients. Raises a DiscoveryError naming the settings that fit the cohort."""
    short = []
    if n_train < d.k_train:
        short.append(f"{n_train} train patients in {store_uri}, fewer than discovery.k_train={d.k_train}")
    if n_train < d.num_classes:
        short.append(f"{n_train} train patients, fewer than discovery.num_classes={d.num_classes} (each class "
                     "needs a reference patient of its own)")
    if n_val < d.k_val:
        short.append(f"{n_val} validation patients in {store_uri}, fewer than discovery.k_val={d.k_val}")
    if not short:
        return
    fits = {"k_train": min(d.k_train, n_train), "num_classes": min(d.num_classes, n_train),
            "k_val": min(d.k_val, n_val)}
    if min(fits.values()) >= 1:
        fix = ("or run this small cohort with smaller values: "
               + " ".join(f"--set discovery.{k}={v}" for k, v in fits.items()))
    else:
        fix = ("and give every split patients (ingest.split_fractions, or a split column in a CSV list); "
               "a store needs at least 1 train and 1 validation patient")
    raise DiscoveryError("; ".join(short) + f": ingest more patients, {fix}")


def habitus_purity(store, references: list[str], neighbours: list[list[str]],
                   pool: list[str] | None = None) -> dict | None:
    """For phantom cohorts: how often a reference's neighbours share its body-type cluster, vs chance.

    ``neighbours[i]`` lists reference ``i``'s neighbours, itself first (rank 0). ``purity``: the mean
    over references of the fraction of its other neighbours in its cluster. ``chance``: the same
    expectation for neighbours drawn at random from ``pool`` (the patients the search chose from,
    the train split): the mean of (n_c - 1) / (N - 1) over the references' clusters c.
    ``chance_selected`` is the earlier estimate, the sum of squared cluster shares among the
    references and their neighbours; it rises with the purity itself (pure neighbours concentrate
    that set on few clusters), so it is only comparable when K covers the whole pool.
    Returns ``None`` when a patient carries no habitus (not a phantom).
    """
    pool = list(pool) if pool is not None else sorted({p for ns in neighbours for p in ns} | set(references))
    groups = {}
    for pid in set(pool) | {p for ns in neighbours for p in ns} | set(references):
        extra = store.meta(pid).get("extra") or {}
        if "habitus" not in extra:
            return None
        groups[pid] = extra["habitus"]
    same = [np.mean([groups[n] == groups[r] for n in ns[1:]]) for r, ns in zip(references, neighbours) if len(ns) > 1]
    sizes = np.bincount([groups[p] for p in pool])
    chance = np.mean([(sizes[groups[r]] - 1) / max(len(pool) - 1, 1) for r in references])
    selected = np.bincount([groups[p] for p in {p for ns in neighbours for p in ns} | set(references)])
    return {"purity": round(float(np.mean(same)), 4), "chance": round(float(chance), 4),
            "chance_selected": round(float(((selected / selected.sum()) ** 2).sum()), 4)}


def all_reference_purity(store, ids: list[str], emb: np.ndarray, k: int) -> dict | None:
    """:func:`habitus_purity` with every patient of ``ids`` as a reference (exact K-NN on ``emb``):
    a steadier measure of the embedding than the ``num_classes`` references alone."""
    if len(ids) < 2:
        return None
    x = np.asarray(emb, np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, -1.0)  # each patient is its own rank 0
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return habitus_purity(store, list(ids), [[ids[j] for j in row] for row in order], pool=list(ids))


def _body_boxes_task(store_uri: str, ids: list[str]) -> dict:
    from semgen_ray.discovery.coordinates import patient_body_box
    from semgen_ray.store import open_store

    store = open_store(store_uri)
    out = {}
    for pid in ids:
        volume, meta = store.read(pid)
        out[pid] = [list(b) for b in patient_body_box(volume, meta["modality"])]
    return out


def body_boxes(store_uri: str, ids: list[str], per_task: int = 8) -> dict[str, tuple]:
    """Body box of every patient in ``ids`` (``coordinates: body_box``), one Ray task per ``per_task``
    patients (each reads its patients' whole volumes once)."""
    import ray

    task = ray.remote(num_cpus=1)(_body_boxes_task)
    parts = ray.get([task.remote(store_uri, ids[s:s + per_task]) for s in range(0, len(ids), per_task)])
    return {pid: tuple(tuple(b) for b in box) for part in parts for pid, box in part.items()}


def run_discovery(config: SemGenConfig, store_uri: str, out_dir: str, force: bool = False) -> dict:
    """Run self-discovery on ``store_uri`` and write its artefacts to ``out_dir``; returns the record.

    Reuses finished work in ``out_dir`` (see the module docstring) unless ``force``.
    """
    from semgen_ray import reuse, runfolder
    from semgen_ray.discovery.autoencoder_training import train_autoencoder
    from semgen_ray.discovery.coordinates import correspond, draw_coordinate
    from semgen_ray.discovery.embedding import embed_patients, load_embeddings, save_embeddings
    from semgen_ray.discovery.index import EmbeddingIndex
    from semgen_ray.discovery.manifest import config_hash, write_manifest
    from semgen_ray.discovery.montage import neighbour_labels, write_distance_plot, write_montage
    from semgen_ray.discovery.neighbours import choose_index, measure_recall, neighbours_for_references
    from semgen_ray.discovery.patterns import class_boxes
    from semgen_ray.gpus import decide_gpus
    from semgen_ray.runtime import init_ray, require_cpus
    from semgen_ray.store import open_store

    d = config.discovery
    out = str(out_dir)  # a local folder or a URI (s3://…): artefacts go through semgen_ray.runfolder
    try:
        runfolder.prepare(out)
    except runfolder.RunFolderError as err:
        raise DiscoveryError(str(err)) from err

    def at(name: str) -> str:
        return runfolder.join(out, name)

    store = open_store(store_uri)
    train_ids, val_ids = _split_ids(store.manifest_rows())
    _check_cohort_size(d, len(train_ids), len(val_ids), store_uri)
    model_kwargs = {"width": config.model.width, "depth": config.model.depth,
                    "norm": config.model.norm, "skips": d.autoencoder == "unet"}
    settings = {k: v for k, v in to_dict(d).items() if k != "use_gpu"}  # where it ran does not change it
    chash = config_hash(settings, {"cube_size": list(config.data.cube_size), "model": model_kwargs,
                                     "volume_shape": list(config.data.volume_shape),
                                     "seed": config.seed, "store": store_uri,
                                     "patients": [train_ids, val_ids]})
    if force:  # the finished-run record first: a forced run that stops must not look finished later
        for name in ("discovery.json", "patterns.parquet", "autoencoder.json", "embeddings.parquet"):
            runfolder.remove(at(name))
    done = None if force else reuse.load(at("discovery.json"), chash)  # its manifest unchanged too
    if done:
        logger.info(f"[discover] {out} already holds this discovery (config hash {chash[:12]}); reusing it")
        return {**done, "reused": True}
    record = {"store": store_uri, "train_patients": len(train_ids), "val_patients": len(val_ids),
              "seconds": {}, "reused_steps": []}
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        record["seconds"][name] = round(now - t, 2)
        t = now
        logger.info(f"[discover] {name}: {record['seconds'][name]} s")

    # 1. auto-encoder + embeddings, on GPUs as discovery.use_gpu decides (asked once, when needed)
    gpu = None

    def use_gpu() -> bool:
        nonlocal gpu
        if gpu is None:
            init_ray(config.ray)
            require_cpus({"data.read_cpus": config.data.read_cpus})
            gpu = decide_gpus(d.use_gpu, "discovery", d.ae_workers, config.ray.gpu_wait_s)
            record["gpu_decision"] = gpu.as_dict()
        return gpu.use

    ae_key = config_hash({k: v for k, v in settings.items() if k.startswith("ae_")},
                         {"model": model_kwargs, "volume_shape": list(config.data.volume_shape),
                          "seed": config.seed, "store": store_uri, "patients": [train_ids, val_ids]})
    ae = None if force else reuse.load(at("autoencoder.json"), ae_key)  # its export unchanged too
    if ae is None:
        logger.info(f"[discover] training the auto-encoder on {len(train_ids)} + {len(val_ids)} (val) whole scans "
                    f"of {list(config.data.volume_shape)}: at most {d.ae_epochs} epochs, patience {d.ae_patience}")
        ae = train_autoencoder(
            store_uri, train_ids, val_ids, model_kwargs=model_kwargs,
            volume_shape=config.data.volume_shape, batch_size=d.ae_batch_size, lr=d.ae_lr,
            max_epochs=d.ae_epochs, patience=d.ae_patience, num_workers=d.ae_workers,
            run_dir=at("autoencoder_run"), seed=config.seed, name=f"autoencoder_{ae_key[:12]}",
            use_gpu=use_gpu(), read_cpus=config.data.read_cpus,
        )
        last = ae["history"][-1]  # how the last epoch ran: its lr, its workers, its training pass
        ae = reuse.save(at("autoencoder.json"), ae_key,
                        {**{k: v for k, v in ae.items()
                            if k in ("epochs", "stopped_early", "best_epoch", "best_val_loss", "model_dir")},
                         "lr": last["lr"], "workers": last.get("workers"), "scans_per_epoch": last.get("train_scans"),
                         "batches_per_epoch": last.get("train_batches")},  # absent from older checkpoints
                        outputs=[reuse.relative(at("autoencoder.json"), ae["model_dir"])])
    else:
        record["reused_steps"].append("autoencoder")
        logger.info(f"[discover] reusing the trained auto-encoder {ae['model_dir']}")
    record["autoencoder"] = ae
    lap("autoencoder")
    emb_path = at("embeddings.parquet")
    previous = load_embeddings(emb_path) if not force and runfolder.isfile(emb_path) else None
    if previous and previous[2].get("ae_key") == ae_key and previous[0] == sorted(train_ids + val_ids):
        ids, emb, _ = previous
        record["reused_steps"].append("embedding")
        logger.info(f"[discover] reusing the embeddings {emb_path}")
    else:
        logger.info(f"[discover] embedding {len(train_ids) + len(val_ids)} patients with the auto-encoder")
        ids, emb = embed_patients(store_uri, ae["model_dir"], config.data.volume_shape,
                                  patient_ids=train_ids + val_ids, num_gpus=1 if use_gpu() else 0,
                                  read_cpus=config.data.read_cpus)
        save_embeddings(emb_path, ids, emb, {"model_dir": str(ae["model_dir"]), "ae_key": ae_key})
    spread = float(emb.std(axis=0).max())
    record["embedding"] = {"dim": int(emb.shape[1]), "max_std_across_patients": spread}
    if spread <= 1e-7 * max(float(np.abs(emb).max()), 1e-12):
        raise DiscoveryError("every patient has the same embedding (a dead or untrained auto-encoder): "
                             "train it longer (discovery.ae_epochs) or check the store's intensities")
    lap("embedding")

    # 2. indices
    row = {pid: i for i, pid in enumerate(ids)}
    tr = np.array([row[p] for p in train_ids])
    va = np.array([row[p] for p in val_ids])
    graph_dim = d.hnsw_pca_dim if 0 < d.hnsw_pca_dim < emb.shape[1] else None
    choice = choose_index(d.num_classes, len(train_ids), int(emb.shape[1]), d.k_train, val_patients=len(val_ids),
                          graph_dim=graph_dim, override=None if d.index == "auto" else d.index)
    method = choice["method"]
    logger.info(f"[discover] index: {choice['reason']}")
    params = dict(M=d.hnsw_m, ef_construction=d.hnsw_ef_construction, ef=d.hnsw_ef)
    # PCA needs more patients than components: a small validation set gets a full-dimension graph
    def pca_dim(n: int) -> int:
        return d.hnsw_pca_dim if method == "hnsw" and n > d.hnsw_pca_dim else 0

    train_index = EmbeddingIndex.build(emb[tr], train_ids, method=method, pca_dim=pca_dim(len(tr)), **params)
    val_index = EmbeddingIndex.build(emb[va], val_ids, method=method, pca_dim=pca_dim(len(va)), **params)
    with runfolder.workdir(at("index_train")) as local:  # hnswlib writes local files
        train_index.save(local)
    record["index"] = {"method": method, **params, "choice": choice}
    if method == "hnsw":
        if d.hnsw_pca_dim:
            record["index"].update(pca_dim=train_index.pca_dim, val_pca_dim=val_index.pca_dim,
                                   pca_variance=train_index.pca_variance)
        rec = record["index"]["recall"] = measure_recall(train_index, emb[tr], k=d.k_train, seed=config.seed)
        if rec["recall_at_k"] < 0.99:
            logger.warning(f"[discover] HNSW recall@{d.k_train} = {rec['recall_at_k']:.3f} on "
                           f"{rec['queries']} sampled references (< 0.99): raise discovery.hnsw_ef or hnsw_m, "
                           "lower or switch off hnsw_pca_dim, or use discovery.index: exact")
    lap("index")

    # 3. references, coordinates, neighbours
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xD15C]))
    candidates = list(rng.permutation(train_ids))
    classes, skipped = [], []
    cube = config.data.cube_size
    while len(classes) < d.num_classes:
        if not candidates:
            raise DiscoveryError(
                f"only {len(classes)} of discovery.num_classes={d.num_classes} references have a "
                f"coordinate passing the foreground test ({len(skipped)} had none): lower num_classes, "
                "the borders or the foreground threshold"
            )
        ref = candidates.pop(0)
        volume, meta = store.read(ref)
        # docs/method.md §2.1: at least min_distance voxels from every coordinate chosen for an earlier class
        coord = draw_coordinate(volume, rng, [c for _, c in classes], cube=cube, config=d,
                                modality=meta["modality"])
        if coord is None:
            skipped.append(ref)
            continue
        classes.append((ref, tuple(int(c) for c in coord)))
    record["references_without_coordinate"] = skipped
    refs = [c[0] for c in classes]
    ref_vectors = emb[[row[r] for r in refs]]
    train_row = {pid: i for i, pid in enumerate(train_ids)}
    # by row: each reference is its own rank 0, even among near-identical embeddings
    tr_nb, tr_dist = neighbours_for_references(train_index, np.array([train_row[r] for r in refs]), d.k_train)
    va_nb, va_dist = neighbours_for_references(val_index, ref_vectors, d.k_val)
    lap("neighbours")

    # 4. boxes and manifest
    shapes = store.shapes()
    rows, dropped = [], 0
    neighbour_ids = []
    # coordinates: voxel = the class coordinate in every neighbour; body_box = mapped from the
    # reference's body box into each neighbour's (the cube centre keeps its relative position)
    boxes_of = None
    if d.coordinates == "body_box":
        needed = sorted(set(refs) | {train_ids[i] for r in tr_nb for i in r} | {val_ids[i] for r in va_nb for i in r})
        boxes_of = body_boxes(store_uri, needed)
    at_coords = []  # per class: patient -> its crop corner
    for class_id, ((ref, coord), nb, dist, vnb, vdist) in enumerate(zip(classes, tr_nb, tr_dist, va_nb, va_dist)):
        train_n = [train_ids[i] for i in nb]
        val_n = [val_ids[i] for i in vnb]
        neighbour_ids.append(train_n)
        at_coords.append({pid: (tuple(coord) if boxes_of is None else
                                correspond(coord, "body_box", boxes_of[ref], boxes_of[pid], cube))
                          for pid in train_n + val_n})
        for split, names, dists, res in (("train", train_n, dist, d.resolutions),
                                         ("val", val_n, vdist, 1)):
            boxes, n_dropped = class_boxes(class_id, ref, coord, names, dists, shapes, rng, cube=cube,
                                           resolutions=res, min_patch=d.min_patch, max_patch=d.max_patch,
                                           max_offset=d.max_offset, split=split,
                                           neighbour_coords=at_coords[-1])
            rows += boxes
            dropped += n_dropped
    manifest_path = at("patterns.parquet")
    write_manifest(rows, str(manifest_path), {"config_hash": chash, "store": store_uri,
                                              "index": record["index"], "classes": len(classes)},
                   config_hash=chash)
    record.update(manifest=str(manifest_path), cubes=len(rows), crops_dropped_out_of_bounds=dropped,
                  config_hash=chash, coordinates=d.coordinates, min_distance=d.min_distance,
                  classes=[{"class_id": i, "reference": r, "coordinate": list(c)}
                           for i, (r, c) in enumerate(classes)])
    if boxes_of is not None:
        for entry in record["classes"]:
            entry["reference_body_box"] = [list(b) for b in boxes_of[entry["reference"]]]
    record["habitus_purity"] = habitus_purity(store, refs, neighbour_ids, pool=train_ids)
    if record["habitus_purity"] is not None and len(train_ids) <= 5000:  # O(N^2) distances
        record["habitus_purity"]["all_references"] = all_reference_purity(store, train_ids, emb[tr], d.k_train)
    lap("patterns")

    # 5. montages (PNGs drawn locally, uploaded to a URI run folder)
    with runfolder.workdir(out) as local:
        for class_id, ((ref, coord), names) in enumerate(zip(classes, neighbour_ids)):
            crops, shown = [], []
            for rank, pid in enumerate(names[:8]):
                box = tuple((c, c + s) for c, s in zip(at_coords[class_id][pid], cube))
                if all(0 <= lo and hi <= n for (lo, hi), n in zip(box, shapes[pid])):
                    crops.append(store.read(pid, region=box, normalize=True)[0])
                    shown.append((pid, float(tr_dist[class_id][rank]), box[2][0] + cube[2] // 2))
            write_montage(local / "montages" / f"class_{class_id:03d}.png", crops,
                          title=f"class {class_id}: reference {ref} at {tuple(map(int, coord))}\n"
                                f"axial slices (z) of the crops; d: embedding distance",
                          labels=neighbour_labels(*zip(*shown)) if shown else None)
        write_distance_plot(local / "neighbour_distances.png", [list(map(float, x)) for x in tr_dist])
    lap("montages")
    reuse.save(at("discovery.json"), chash, record, outputs=["patterns.parquet"])  # last: marks it finished
    return record
