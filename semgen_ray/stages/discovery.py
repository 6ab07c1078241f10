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

from semgen_ray import reuse
from semgen_ray.config import to_dict
from semgen_ray.config.schema import SemGenConfig
from semgen_ray.stages import StageError

logger = logging.getLogger(__name__)

#: Settings added after runs existed, left out of the discovery's hashes while at these defaults, so
#: a run made before them (an auto-encoder trained for days) is still reused.
LATER_DEFAULTS = {"ae_engine": "torch", "ae_precision": "fp32", "ae_zero_stage": 0}


class DiscoveryError(StageError):
    """Self-discovery cannot run on this store/config; the message says why and what to change."""


def _split_ids(rows: list[dict], images: bool = False) -> tuple[list[str], list[str]]:
    from semgen_ray.store.manifest import is_volume

    ok = [r for r in rows if r["status"] == "ok" and is_volume(r) != images]  # volumes, or the 2D images
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


class _Run:
    """One discovery run's shared state: the config, the store and its splits, the output folder,
    the config hash, the record being written and its step timer; the GPU decision is taken once,
    when a step first needs it."""

    def __init__(self, config: SemGenConfig, store_uri: str, out_dir: str, force: bool) -> None:
        from semgen_ray import runfolder
        from semgen_ray.discovery.pattern_manifest import config_hash
        from semgen_ray.store import open_store

        self.config, self.d, self.store_uri, self.force = config, config.discovery, store_uri, force
        self.out = str(out_dir)  # a local folder or a URI (s3://…): artefacts go through semgen_ray.runfolder
        try:
            runfolder.prepare(self.out)
        except runfolder.RunFolderError as err:
            raise DiscoveryError(str(err)) from err
        self.store = open_store(store_uri)
        # a flat volume_shape (z = 1): the store's 2D images, as (X, Y, 1) volumes (Semantic Genesis 2D)
        self.flat = config.data.flat
        if self.flat and self.d.coordinates == "body_box":
            raise DiscoveryError("discovery.coordinates: body_box is for CT volumes; 2D images use voxel")
        self.train_ids, self.val_ids = _split_ids(self.store.manifest_rows(), images=self.flat)
        _check_cohort_size(self.d, len(self.train_ids), len(self.val_ids), store_uri)
        self.model_kwargs = {"width": config.model.width, "depth": config.model.depth,
                             "norm": config.model.norm, "skips": self.d.autoencoder == "unet",
                             **({"spatial_dims": 2} if self.flat else {})}
        self.ae_shape = tuple(config.data.volume_shape)[:2] if self.flat else tuple(config.data.volume_shape)
        # where it ran does not change the result
        self.settings = reuse.without_later_defaults({k: v for k, v in to_dict(self.d).items() if k != "use_gpu"},
                                                     LATER_DEFAULTS)
        self.inputs = {"model": self.model_kwargs, "volume_shape": list(config.data.volume_shape),
                       "seed": config.seed, "store": store_uri, "patients": [self.train_ids, self.val_ids]}
        self.chash = config_hash(self.settings, {"cube_size": list(config.data.cube_size), **self.inputs})
        self.record = {"store": store_uri, "train_patients": len(self.train_ids),
                       "val_patients": len(self.val_ids), "seconds": {}, "reused_steps": []}
        self._t = time.perf_counter()
        self._gpu = None

    def at(self, name: str) -> str:
        from semgen_ray import runfolder

        return runfolder.join(self.out, name)

    def read(self, pid: str, region=None, normalize: bool = False) -> tuple[np.ndarray, dict]:
        """A patient's volume (or a box of it); a 2D image as an (X, Y, 1) volume."""
        return (self.store.read_flat if self.flat else self.store.read)(pid, region=region, normalize=normalize)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Every patient's shape (X, Y, Z); a 2D image's is (X, Y, 1)."""
        return self.store.box_shapes(images=self.flat)

    def lap(self, name: str) -> None:
        """Record and log the seconds since the previous step ended."""
        now = time.perf_counter()
        self.record["seconds"][name] = round(now - self._t, 2)
        self._t = now
        logger.info(f"[discover] {name}: {self.record['seconds'][name]} s")

    def use_gpu(self) -> bool:
        """Whether the auto-encoder and the embedding run on GPUs (``discovery.use_gpu``), asked once."""
        if self._gpu is None:
            from semgen_ray.gpus import decide_gpus
            from semgen_ray.runtime import init_ray, require_cpus

            init_ray(self.config.ray)
            require_cpus({"data.read_cpus": self.config.data.read_cpus})
            self._gpu = decide_gpus(self.d.use_gpu, "discovery", self.d.ae_workers, self.config.ray.gpu_wait_s)
            self.record["gpu_decision"] = self._gpu.as_dict()
        return self._gpu.use


def _finished(run: _Run) -> dict | None:
    """The record of a finished run with this config hash and an unchanged manifest, else ``None``;
    ``force`` first deletes the records, so a forced run that stops never looks finished later."""
    from semgen_ray import runfolder

    if run.force:
        for name in ("discovery.json", "patterns.parquet", "autoencoder.json", "embeddings.parquet"):
            runfolder.remove(run.at(name))
        return None
    done = reuse.load(run.at("discovery.json"), run.chash)  # its manifest unchanged too
    if done:
        logger.info(f"[discover] {run.out} already holds this discovery (config hash {run.chash[:12]}); reusing it")
    return done


def _autoencoder(run: _Run) -> tuple[dict, str]:
    """Step 1a: the trained auto-encoder's record and its reuse key (reused when the key matches)."""
    from semgen_ray.discovery.autoencoder_training import train_autoencoder
    from semgen_ray.discovery.pattern_manifest import config_hash

    d, at = run.d, run.at
    ae_key = config_hash({k: v for k, v in run.settings.items() if k.startswith("ae_")}, run.inputs)
    ae = None if run.force else reuse.load(at("autoencoder.json"), ae_key)  # its export unchanged too
    if ae is not None:
        run.record["reused_steps"].append("autoencoder")
        logger.info(f"[discover] reusing the trained auto-encoder {ae['model_dir']}")
        return ae, ae_key
    shape = run.ae_shape
    logger.info(f"[discover] training the auto-encoder on {len(run.train_ids)} + {len(run.val_ids)} (val) whole "
                f"{'images' if run.flat else 'scans'} of {list(shape)}: at most {d.ae_epochs} epochs, "
                f"patience {d.ae_patience}")
    ae = train_autoencoder(
        run.store_uri, run.train_ids, run.val_ids, model_kwargs=run.model_kwargs, volume_shape=shape,
        batch_size=d.ae_batch_size, lr=d.ae_lr, max_epochs=d.ae_epochs, patience=d.ae_patience,
        num_workers=d.ae_workers, run_dir=at("autoencoder_run"), seed=run.config.seed, engine=d.ae_engine,
        precision=d.ae_precision, zero_stage=d.ae_zero_stage,
        name=f"autoencoder_{ae_key[:12]}", use_gpu=run.use_gpu(), read_cpus=run.config.data.read_cpus,
    )
    last = ae["history"][-1]  # how the last epoch ran: its lr, its workers, its training pass
    kept = {k: v for k, v in ae.items() if k in ("epochs", "stopped_early", "best_epoch", "best_val_loss", "model_dir",
                                                  "engine", "precision", "zero_stage")}
    ae = reuse.save(at("autoencoder.json"), ae_key,
                    {**kept, "lr": last["lr"], "workers": last.get("workers"),
                     "scans_per_epoch": last.get("train_scans"),
                     "batches_per_epoch": last.get("train_batches")},  # absent from older checkpoints
                    outputs=[reuse.relative(at("autoencoder.json"), ae["model_dir"])])
    return ae, ae_key


def _embeddings(run: _Run, ae: dict, ae_key: str) -> tuple[list[str], np.ndarray]:
    """Step 1b: every patient's embedding (reused when made by the same auto-encoder for the same patients)."""
    from semgen_ray import runfolder
    from semgen_ray.discovery.embedding import embed_patients, load_embeddings, save_embeddings

    emb_path = run.at("embeddings.parquet")
    patients = run.train_ids + run.val_ids
    previous = load_embeddings(emb_path) if not run.force and runfolder.isfile(emb_path) else None
    if previous and previous[2].get("ae_key") == ae_key and previous[0] == sorted(patients):
        ids, emb, _ = previous
        run.record["reused_steps"].append("embedding")
        logger.info(f"[discover] reusing the embeddings {emb_path}")
    else:
        logger.info(f"[discover] embedding {len(patients)} patients with the auto-encoder")
        ids, emb = embed_patients(run.store_uri, ae["model_dir"], run.ae_shape,
                                  patient_ids=patients, num_gpus=1 if run.use_gpu() else 0,
                                  read_cpus=run.config.data.read_cpus)
        save_embeddings(emb_path, ids, emb, {"model_dir": str(ae["model_dir"]), "ae_key": ae_key})
    spread = float(emb.std(axis=0).max())
    run.record["embedding"] = {"dim": int(emb.shape[1]), "max_std_across_patients": spread}
    if spread <= 1e-7 * max(float(np.abs(emb).max()), 1e-12):
        raise DiscoveryError("every patient has the same embedding (a dead or untrained auto-encoder): "
                             "train it longer (discovery.ae_epochs) or check the store's intensities")
    return ids, emb


def _indices(run: _Run, train_emb: np.ndarray, val_emb: np.ndarray):
    """Step 2: the train and validation indices (method chosen by the cost model or the config),
    the train index saved, HNSW recall measured against exact search."""
    from semgen_ray import runfolder
    from semgen_ray.discovery.index import EmbeddingIndex
    from semgen_ray.discovery.neighbours import choose_index, measure_recall

    d, dim = run.d, int(train_emb.shape[1])
    graph_dim = d.hnsw_pca_dim if 0 < d.hnsw_pca_dim < dim else None
    choice = choose_index(d.num_classes, len(train_emb), dim, d.k_train, val_patients=len(val_emb),
                          graph_dim=graph_dim, override=None if d.index == "auto" else d.index)
    method = choice["method"]
    logger.info(f"[discover] index: {choice['reason']}")
    params = dict(M=d.hnsw_m, ef_construction=d.hnsw_ef_construction, ef=d.hnsw_ef)

    def build(x: np.ndarray, ids: list[str]):  # PCA needs more patients than components
        pca = d.hnsw_pca_dim if method == "hnsw" and len(x) > d.hnsw_pca_dim else 0
        return EmbeddingIndex.build(x, ids, method=method, pca_dim=pca, **params)

    train_index, val_index = build(train_emb, run.train_ids), build(val_emb, run.val_ids)
    with runfolder.workdir(run.at("index_train")) as local:  # hnswlib writes local files
        train_index.save(local)
    info = run.record["index"] = {"method": method, **params, "choice": choice}
    if method == "hnsw":
        if d.hnsw_pca_dim:
            info.update(pca_dim=train_index.pca_dim, val_pca_dim=val_index.pca_dim,
                        pca_variance=train_index.pca_variance)
        rec = info["recall"] = measure_recall(train_index, train_emb, k=d.k_train, seed=run.config.seed)
        if rec["recall_at_k"] < 0.99:
            logger.warning(f"[discover] HNSW recall@{d.k_train} = {rec['recall_at_k']:.3f} on "
                           f"{rec['queries']} sampled references (< 0.99): raise discovery.hnsw_ef or hnsw_m, "
                           "lower or switch off hnsw_pca_dim, or use discovery.index: exact")
    return train_index, val_index


def _references(run: _Run, rng: np.random.Generator) -> list[tuple[str, tuple]]:
    """Step 3a (docs/method.md §2.1): per class a fresh train reference and a coordinate that passes
    the foreground test, at least ``min_distance`` voxels from every earlier class's coordinate."""
    from semgen_ray.discovery.coordinates import draw_coordinate

    d = run.d
    candidates = list(rng.permutation(run.train_ids))
    classes, skipped = [], []
    while len(classes) < d.num_classes:
        if not candidates:
            raise DiscoveryError(
                f"only {len(classes)} of discovery.num_classes={d.num_classes} references have a "
                f"coordinate passing the foreground test ({len(skipped)} had none): lower num_classes, "
                "the borders or the foreground threshold"
            )
        ref = candidates.pop(0)
        volume, meta = run.read(ref)
        coord = draw_coordinate(volume, rng, [c for _, c in classes], cube=run.config.data.cube_size, config=d,
                                modality=meta["modality"])
        if coord is None:
            skipped.append(ref)
            continue
        classes.append((ref, tuple(int(c) for c in coord)))
    run.record["references_without_coordinate"] = skipped
    return classes


def _crop_corners(run: _Run, classes, train_neighbours, val_neighbours) -> tuple[list[dict], dict | None]:
    """Per class: neighbour → its crop corner, and the body boxes used (``None`` unless
    ``coordinates: body_box``). ``voxel``: the class coordinate in every neighbour; ``body_box``:
    mapped from the reference's body box into each neighbour's (the cube centre keeps its relative
    position)."""
    from semgen_ray.discovery.coordinates import correspond

    if run.d.coordinates != "body_box":
        return [dict.fromkeys(t + v, tuple(coord)) for (_, coord), t, v in
                zip(classes, train_neighbours, val_neighbours)], None
    needed = sorted({r for r, _ in classes}.union(*train_neighbours, *val_neighbours))
    boxes_of = body_boxes(run.store_uri, needed)
    cube = run.config.data.cube_size
    return [{pid: correspond(coord, "body_box", boxes_of[ref], boxes_of[pid], cube) for pid in t + v}
            for (ref, coord), t, v in zip(classes, train_neighbours, val_neighbours)], boxes_of


def _patterns(run: _Run, rng, classes, train_nb, train_dist, val_nb, val_dist, corners, boxes_of) -> None:
    """Step 4: the crop boxes of every class in its train (resolutions 1-N) and validation
    neighbours, the pattern manifest, and the record's class list and neighbour purity."""
    from semgen_ray.discovery.pattern_manifest import write_manifest
    from semgen_ray.discovery.patterns import class_boxes

    d, shapes = run.d, run.shapes()
    rows, dropped = [], 0
    for class_id, (ref, coord) in enumerate(classes):
        for split, names, dists, res in (("train", train_nb[class_id], train_dist[class_id], d.resolutions),
                                         ("val", val_nb[class_id], val_dist[class_id], 1)):
            boxes, n_dropped = class_boxes(class_id, ref, coord, names, dists, shapes, rng,
                                           cube=run.config.data.cube_size, resolutions=res,
                                           min_patch=d.min_patch, max_patch=d.max_patch, max_offset=d.max_offset,
                                           split=split, neighbour_coords=corners[class_id])
            rows += boxes
            dropped += n_dropped
    manifest_path = run.at("patterns.parquet")
    write_manifest(rows, str(manifest_path), {"config_hash": run.chash, "store": run.store_uri,
                                              "index": run.record["index"], "classes": len(classes)},
                   config_hash=run.chash)
    run.record.update(manifest=str(manifest_path), cubes=len(rows), crops_dropped_out_of_bounds=dropped,
                      config_hash=run.chash, coordinates=d.coordinates, min_distance=d.min_distance,
                      classes=[{"class_id": i, "reference": r, "coordinate": list(c)}
                               for i, (r, c) in enumerate(classes)])
    if boxes_of is not None:
        for entry in run.record["classes"]:
            entry["reference_body_box"] = [list(b) for b in boxes_of[entry["reference"]]]


def _purity(run: _Run, refs: list[str], train_nb: list[list[str]], train_emb: np.ndarray) -> None:
    """Neighbour purity on a phantom cohort (``None`` elsewhere), for the class references and for
    every train patient as a reference (O(N²) distances: up to 5,000 train patients)."""
    purity = run.record["habitus_purity"] = habitus_purity(run.store, refs, train_nb, pool=run.train_ids)
    if purity is not None and len(run.train_ids) <= 5000:
        purity["all_references"] = all_reference_purity(run.store, run.train_ids, train_emb, run.d.k_train)


def _montages(run: _Run, classes, train_nb, train_dist, corners) -> None:
    """Step 5: a montage of each class's first 8 crops and the distance plot (PNGs drawn locally,
    uploaded to a URI run folder)."""
    from semgen_ray import runfolder
    from semgen_ray.discovery.montage import neighbour_labels, write_distance_plot, write_montage

    cube, shapes = run.config.data.cube_size, run.shapes()
    with runfolder.workdir(run.out) as local:
        for class_id, ((ref, coord), names) in enumerate(zip(classes, train_nb)):
            crops, shown = [], []
            for rank, pid in enumerate(names[:8]):
                box = tuple((c, c + s) for c, s in zip(corners[class_id][pid], cube))
                if all(0 <= lo and hi <= n for (lo, hi), n in zip(box, shapes[pid])):
                    crops.append(run.read(pid, region=box, normalize=True)[0])
                    shown.append((pid, float(train_dist[class_id][rank]), box[2][0] + cube[2] // 2))
            write_montage(local / "montages" / f"class_{class_id:03d}.png", crops,
                          title=f"class {class_id}: reference {ref} at {tuple(map(int, coord))}\n"
                                f"{'the film patches' if run.flat else 'axial slices (z) of the crops'}; "
                                "d: embedding distance",
                          labels=neighbour_labels(*zip(*shown)) if shown else None)
        write_distance_plot(local / "neighbour_distances.png", [list(map(float, x)) for x in train_dist])


def run_discovery(config: SemGenConfig, store_uri: str, out_dir: str, force: bool = False) -> dict:
    """Run self-discovery on ``store_uri`` and write its artefacts to ``out_dir``; returns the record.

    Reuses finished work in ``out_dir`` (see the module docstring) unless ``force``.
    """
    from semgen_ray.discovery.neighbours import neighbours_for_references

    run = _Run(config, store_uri, out_dir, force)
    done = _finished(run)
    if done:
        return {**done, "reused": True}
    ae, ae_key = _autoencoder(run)
    run.record["autoencoder"] = ae
    run.lap("autoencoder")
    ids, emb = _embeddings(run, ae, ae_key)
    run.lap("embedding")
    row = {pid: i for i, pid in enumerate(ids)}
    train_emb, val_emb = emb[[row[p] for p in run.train_ids]], emb[[row[p] for p in run.val_ids]]
    train_index, val_index = _indices(run, train_emb, val_emb)
    run.lap("index")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xD15C]))  # references, then boxes
    classes = _references(run, rng)
    refs = [r for r, _ in classes]
    train_row = {pid: i for i, pid in enumerate(run.train_ids)}
    # by row: each reference is its own rank 0, even among near-identical embeddings
    tr_nb, tr_dist = neighbours_for_references(train_index, np.array([train_row[r] for r in refs]), run.d.k_train)
    va_nb, va_dist = neighbours_for_references(val_index, emb[[row[r] for r in refs]], run.d.k_val)
    train_nb = [[run.train_ids[i] for i in r] for r in tr_nb]
    val_nb = [[run.val_ids[i] for i in r] for r in va_nb]
    run.lap("neighbours")
    corners, boxes_of = _crop_corners(run, classes, train_nb, val_nb)
    _patterns(run, rng, classes, train_nb, tr_dist, val_nb, va_dist, corners, boxes_of)
    _purity(run, refs, train_nb, train_emb)
    run.lap("patterns")
    _montages(run, classes, train_nb, tr_dist, corners)
    run.lap("montages")
    reuse.save(run.at("discovery.json"), run.chash, run.record, outputs=["patterns.parquet"])  # last: marks it finished
    return run.record
