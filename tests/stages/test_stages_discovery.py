"""``python -m semgen_ray.discover`` end to end on a small phantom store (local Ray, tiny sizes)."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from semgen_ray.discover import main
from semgen_ray.discovery.pattern_manifest import read_manifest

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

TINY = ["model.width=4", "data.volume_shape=[32, 32, 16]", "data.cube_size=[16, 16, 8]",
        "discovery.num_classes=2", "discovery.k_train=3", "discovery.k_val=1", "discovery.border_xy=4",
        "discovery.border_z=2", "discovery.min_patch=12", "discovery.max_patch=20",
        "discovery.max_offset=2", "discovery.ae_epochs=1", "discovery.ae_batch_size=2"]


def _args(store, out, extra=()):
    return ["--store", store, "--out", str(out), *[a for s in (*TINY, *extra) for a in ("--set", s)]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ten_phantoms, ray_local):
    """One full discovery (auto-encoder trained once for the module); tests copy its folder and re-run
    variants into the copy, which reuse the auto-encoder and embeddings and redo only the cheap steps."""
    run = tmp_path_factory.mktemp("discovery") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(_args(ten_phantoms, run)) == 0
    return run, printed.getvalue()


def _copy(finished, dest):
    shutil.copytree(finished[0], dest)
    return dest


def _record(run):
    return json.loads((run / "discovery.json").read_text())


def _res1(run, split=None):
    """Resolution-1 rows of the manifest by (class, patient, split): the crop corner."""
    return {(r["class_id"], r["patient_id"], r["split"]): (r["x0"], r["y0"], r["z0"])
            for r in read_manifest(str(run / "patterns.parquet")).to_pylist()
            if r["resolution"] == 1 and split in (None, r["split"])}


def test_discover_writes_a_valid_manifest_montages_and_record(finished, ten_phantoms):
    from PIL import Image

    run, printed = finished
    assert "pattern manifest:" in printed
    # progress of the auto-encoder's Ray Train run reaches the driver's console (issue 16)
    assert "[discover] training the auto-encoder" in printed and "[discover] auto-encoder epoch 1/1:" in printed
    table = read_manifest(str(run / "patterns.parquet"))
    rows = table.to_pylist()
    from semgen_ray.store import open_store

    shapes = {r["patient_id"]: r["shape"] for r in open_store(ten_phantoms).manifest_rows()}
    assert {r["class_id"] for r in rows} == {0, 1}
    for r in rows:
        lo = np.array([r["x0"], r["y0"], r["z0"]])
        hi = np.array([r["x1"], r["y1"], r["z1"]])
        assert (lo >= 0).all() and (hi <= np.array(shapes[r["patient_id"]])).all() and (hi > lo).all()
        if r["resolution"] == 1:
            assert list(hi - lo) == [16, 16, 8]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert {r["resolution"] for r in rows if r["split"] == "val"} == {1}
    # every reference is its own nearest train neighbour
    for cls in {r["class_id"] for r in rows}:
        first = [r for r in rows if r["class_id"] == cls and r["split"] == "train" and r["rank"] == 0][0]
        assert first["patient_id"] == first["reference_id"]
    record = _record(run)
    assert record["reused_steps"] == [] and len(record["classes"]) == 2
    # index: auto chose exact search by its cost model and says why, with both estimates
    index = record["index"]
    assert index["method"] == "exact" and index["choice"]["mode"] == "auto"
    est = index["choice"]["estimated_s"]
    assert 0 <= est["exact"] < est["hnsw"] and "estimated" in index["choice"]["reason"]
    assert any(f.startswith("benchmarks/results/neighbours") for f in index["choice"]["calibration"])
    purity = record["habitus_purity"]  # phantoms carry their body-type cluster
    assert {"purity", "chance", "chance_selected", "all_references"} <= set(purity)
    assert 0 <= purity["chance"] < 1 and 0 <= purity["all_references"]["purity"] <= 1
    # the montage: one tile per neighbour (K = 3, reference first) in one row, 1.2-inch tiles at
    # 80 dpi plus the title band, and real picture content (not one flat colour)
    with Image.open(run / "montages" / "class_000.png") as im:
        assert im.size == (round(3 * 1.2 * 80), round((1.2 + 0.4) * 80))
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    assert grey.std() > 10
    third = grey.shape[1] // 3  # every tile holds an image (the panels are not blank)
    assert all(grey[30:, i * third:(i + 1) * third].std() > 10 for i in range(3))
    with Image.open(run / "neighbour_distances.png") as im:
        assert min(im.size) > 100 and np.asarray(im.convert("L")).std() > 5


def test_discover_refuses_too_few_patients_for_k(tmp_path, ten_phantoms, capsys):
    assert main(_args(ten_phantoms, tmp_path / "run", ["discovery.k_train=50"])) == 1
    assert "fewer than discovery.k_train=50" in capsys.readouterr().err


def test_discover_is_deterministic_and_reuses_finished_work(finished, tmp_path, ten_phantoms, capsys):
    """Re-running with the same seed reuses the auto-encoder and embeddings and rebuilds the same manifest."""
    run = _copy(finished, tmp_path / "run")
    first = read_manifest(str(run / "patterns.parquet"))
    record = _record(run)
    assert main(_args(ten_phantoms, run)) == 0  # finished: nothing redone
    assert "already holds this discovery" in capsys.readouterr().out
    (run / "patterns.parquet").unlink()
    (run / "discovery.json").unlink()
    assert main(_args(ten_phantoms, run)) == 0
    again = _record(run)
    assert again["reused_steps"] == ["autoencoder", "embedding"]
    assert read_manifest(str(run / "patterns.parquet")).equals(first)
    assert again["classes"] == record["classes"] and again["config_hash"] == record["config_hash"]
    # another seed is another discovery (new references), not a reuse
    assert main(_args(ten_phantoms, run, ["seed=1"])) == 0
    assert _record(run)["config_hash"] != record["config_hash"]


def test_min_distance_and_body_box_change_the_discovery(finished, tmp_path, ten_phantoms):
    """discovery.min_distance keeps each class coordinate that far from earlier classes' (docs/method.md §2.1);
    discovery.coordinates=body_box maps the class coordinate into each neighbour's body box."""
    from semgen_ray.discovery.coordinates import body_box, map_coordinate
    from semgen_ray.store import open_store

    run = _copy(finished, tmp_path / "run")
    base = _record(run)["classes"]
    c0, c1 = (np.array(c["coordinate"]) for c in base)
    gap = float(np.linalg.norm(c0 - c1))
    # a separation just above the default run's gap: class 0 keeps its coordinate, class 1 must move
    sep = int(gap) + 1
    assert main(_args(ten_phantoms, run, [f"discovery.min_distance={sep}"])) == 0
    moved = _record(run)
    assert moved["reused_steps"] == ["autoencoder", "embedding"] and moved["min_distance"] == sep
    assert moved["classes"][0] == base[0]
    assert moved["classes"][1]["coordinate"] != base[1]["coordinate"]
    coords = [np.array(c["coordinate"]) for c in moved["classes"]]
    assert np.linalg.norm(coords[0] - coords[1]) >= sep

    # body_box: the same classes (references, coordinates), crops moved to each neighbour's body box
    voxel = _res1(finished[0])
    assert main(_args(ten_phantoms, run, ["discovery.coordinates=body_box"])) == 0
    record = _record(run)
    assert record["coordinates"] == "body_box" and record["classes"][0]["coordinate"] == base[0]["coordinate"]
    mapped = _res1(run)
    store = open_store(ten_phantoms)
    boxes = {pid: body_box(store.read(pid)[0], -500.0) for pid in store.patient_ids}
    shapes = store.shapes()
    for c in record["classes"]:
        assert c["reference_body_box"] == [list(b) for b in boxes[c["reference"]]]
    expected = {}
    for (cls, pid, split) in voxel:
        ref = record["classes"][cls]["reference"]
        corner = map_coordinate(record["classes"][cls]["coordinate"], boxes[ref], boxes[pid], (16, 16, 8))
        if all(0 <= c and c + s <= n for c, s, n in zip(corner, (16, 16, 8), shapes[pid])):
            expected[(cls, pid, split)] = tuple(corner)
    assert mapped == expected  # the documented mapping, for every neighbour whose cube fits
    for (cls, pid, split), corner in mapped.items():
        if pid == record["classes"][cls]["reference"] and split == "train":
            assert list(corner) == record["classes"][cls]["coordinate"]  # the reference keeps its own
    assert sum(mapped[key] != voxel[key] for key in mapped) >= 2  # and the outcome changed


def test_discover_with_a_pca_hnsw_index_records_it(finished, tmp_path, ten_phantoms):
    """``discovery.index=hnsw`` with ``hnsw_pca_dim``: the saved index and the record say what was used,
    and on embeddings that separate the phantoms' body types the recall and purity are the right ones.

    The module's 1-epoch auto-encoder embeds these patients alike (squared distances ~1e-9, within
    float32 rounding), so neither recall nor purity means anything on its embeddings. The test plants
    known embeddings instead (body-type one-hot + small distinct noise, under the same auto-encoder
    key, so the run reuses them) and checks what the run derives from them.
    """
    from semgen_ray.discovery.embedding import load_embeddings, save_embeddings
    from semgen_ray.discovery.index import EmbeddingIndex
    from semgen_ray.store import open_store

    run = _copy(finished, tmp_path / "run")
    store = open_store(ten_phantoms)
    ids, emb, meta = load_embeddings(run / "embeddings.parquet")
    habitus = {pid: store.meta(pid)["extra"]["habitus"] for pid in ids}
    planted = np.random.default_rng(0).normal(scale=0.01, size=emb.shape).astype(np.float32)
    planted[np.arange(len(ids)), [habitus[p] for p in ids]] += 1.0
    save_embeddings(run / "embeddings.parquet", ids, planted, meta)

    assert main(_args(ten_phantoms, run, ["discovery.index=hnsw", "discovery.hnsw_pca_dim=4"])) == 0
    full = _record(run)
    assert full["reused_steps"] == ["autoencoder", "embedding"]
    record = full["index"]
    assert record["method"] == "hnsw" and record["pca_dim"] == 4
    assert record["choice"]["mode"] == "configured" and record["choice"]["method"] == "hnsw"
    assert record["val_pca_dim"] == 0  # 3 validation patients: too few for 4 components
    assert 0 < record["pca_variance"] <= 1
    # ef (400) is above the train patients' count: every patient is a candidate and the re-ranking is
    # exact, so recall@3 is exactly 1 (below if the graph, the PCA or the re-ranked rows go wrong)
    assert record["recall"]["recall_at_k"] == 1.0 and record["recall"]["k"] == 3
    assert record["recall"]["queries"] == full["train_patients"]
    # purity: each reference's 2 other neighbours are its body type's other train patients first
    train = [r["patient_id"] for r in store.manifest_rows() if r["split"] == "train" and r["status"] == "ok"]
    size = {h: sum(habitus[p] == h for p in train) for h in set(habitus.values())}

    def expected(refs):
        return float(np.mean([min(size[habitus[r]] - 1, 2) / 2 for r in refs]))

    purity = full["habitus_purity"]
    refs = [c["reference"] for c in full["classes"]]
    assert purity["purity"] == pytest.approx(expected(refs), abs=1e-4)
    assert purity["all_references"]["purity"] == pytest.approx(expected(train), abs=1e-4)
    # the best a K = 3 search can do on these 5 train patients (one pair shares a body type): 0.2,
    # twice the 0.1 of random neighbours
    assert purity["all_references"]["purity"] >= 1.5 * purity["all_references"]["chance"] > 0
    index = EmbeddingIndex.load(run / "index_train")
    assert index.pca_dim == 4 and index.dim == full["embedding"]["dim"] > 4


def test_habitus_purity_chance_is_that_of_random_neighbours_from_the_pool():
    """Chance = mean over references of (n_c - 1) / (N - 1) in the pool, not the squared cluster
    shares of the selected patients (which rise with the purity itself)."""
    from semgen_ray.stages.discovery import habitus_purity

    class Store:
        def meta(self, pid):
            return {"extra": {"habitus": int(pid[1])}}

    pool = [f"p{c}{i}" for c in range(4) for i in range(5)]  # 4 clusters of 5
    perfect = habitus_purity(Store(), ["p00", "p10"], [["p00", "p01", "p02"], ["p10", "p11", "p12"]], pool=pool)
    assert perfect["purity"] == 1.0 and perfect["chance"] == pytest.approx(4 / 19, abs=1e-4)
    assert perfect["chance_selected"] == 0.5  # two clusters among the selected: inflated


def test_class_and_crop_settings_change_the_manifest(finished, tmp_path, ten_phantoms):
    """discovery.num_classes adds classes (the earlier ones unchanged), k_train / k_val set the
    neighbours per class and split, min_patch / max_patch the side of the rescaled crops, max_offset
    their in-plane shift from the class coordinate, resolutions how many crops a train neighbour
    gives; the auto-encoder and embeddings are reused."""
    base = _record(finished[0])
    base_rows = read_manifest(str(finished[0] / "patterns.parquet")).to_pylist()
    run = _copy(finished, tmp_path / "run")
    assert main(_args(ten_phantoms, run, ["discovery.num_classes=3", "discovery.k_train=2", "discovery.k_val=2",
                                          "discovery.min_patch=14", "discovery.max_patch=15",
                                          "discovery.max_offset=0"])) == 0
    record = _record(run)
    rows = read_manifest(str(run / "patterns.parquet")).to_pylist()
    assert record["reused_steps"] == ["autoencoder", "embedding"]

    def ranks(rows, split):
        return {c: sorted({r["rank"] for r in rows if r["class_id"] == c and r["split"] == split})
                for c in {r["class_id"] for r in rows}}

    assert len(record["classes"]) == 3 and record["classes"][:2] == base["classes"]  # num_classes
    assert ranks(base_rows, "train") == {0: [0, 1, 2], 1: [0, 1, 2]} and ranks(base_rows, "val") == {0: [0], 1: [0]}
    assert ranks(rows, "train") == {c: [0, 1] for c in range(3)}  # k_train
    assert ranks(rows, "val") == {c: [0, 1] for c in range(3)}  # k_val

    def rescaled(rows, record):
        corner = {c["class_id"]: tuple(c["coordinate"][:2]) for c in record["classes"]}
        return [(r["x1"] - r["x0"], r["y1"] - r["y0"], (r["x0"], r["y0"]) == corner[r["class_id"]])
                for r in rows if r["resolution"] > 1]

    before, after = rescaled(base_rows, base), rescaled(rows, record)
    assert len({side for side, _, _ in before}) > 1 and not all(at for _, _, at in before)
    assert after and {(sx, sy) for sx, sy, _ in after} == {(14, 14)}  # min_patch, max_patch
    assert all(at for _, _, at in after)  # max_offset = 0: every rescaled crop starts at the coordinate

    assert main(_args(ten_phantoms, run, ["discovery.resolutions=1"])) == 0
    rows = read_manifest(str(run / "patterns.parquet")).to_pylist()
    assert {r["resolution"] for r in base_rows} == {1, 2, 3} and {r["resolution"] for r in rows} == {1}
    assert _record(run)["cubes"] == sum(r["resolution"] == 1 for r in base_rows) < len(base_rows)


def test_hnsw_settings_reach_the_saved_graph(finished, tmp_path, ten_phantoms):
    """discovery.hnsw_m and hnsw_ef_construction build the graph (read back from hnswlib's own file),
    hnsw_ef is the query beam of the saved index; the record names all three."""
    import hnswlib

    from semgen_ray.discovery.index import EmbeddingIndex

    run = _copy(finished, tmp_path / "run")
    settings = {"hnsw_m": 4, "hnsw_ef_construction": 9, "hnsw_ef": 7}
    assert main(_args(ten_phantoms, run, ["discovery.index=hnsw",
                                          *[f"discovery.{k}={v}" for k, v in settings.items()]])) == 0
    record = _record(run)["index"]
    assert record["method"] == "hnsw" and (record["M"], record["ef_construction"], record["ef"]) == (4, 9, 7)
    saved = EmbeddingIndex.load(run / "index_train")
    graph = hnswlib.Index(space="l2", dim=saved.dim)
    graph.load_index(str(run / "index_train" / "index.hnsw"))
    assert (graph.M, graph.ef_construction) == (4, 9)  # the defaults are 16, 200
    assert saved.ef == 7 and record["recall"]["k"] == 3


def test_coordinate_settings_change_where_classes_sit(finished, tmp_path, ten_phantoms, capsys):
    """discovery.border_xy / border_z bound the class coordinates, lung_max / lung_threshold_hu decide
    which windows pass the "mostly lung" test (docs/method.md §2.1), max_tries how many draws a reference
    gets before the next reference is taken. Each is set just past what the module's run chose."""
    from semgen_ray.discovery.foreground import lung_window_sums
    from semgen_ray.store import open_store

    store = open_store(ten_phantoms)
    shapes = store.shapes()
    cube, len_depth = (16, 16, 8), 3

    def margins(c):
        """How far a class coordinate lies inside its draw range at zero borders: (in-plane, z)."""
        (X, Y, Z), (x, y, z) = shapes[c["reference"]], c["coordinate"]
        return (min(x, y, X - cube[0] - 1 - x, Y - cube[1] - 1 - y), min(z, Z - cube[2] - len_depth - 1 - z))

    def lung(c):
        """The rule's score of a class window: the weighted fraction at or above -150 HU."""
        volume = store.read(c["reference"])[0]
        return float(lung_window_sums(volume, [c["coordinate"]], cube, -150.0, len_depth)[0]) / np.prod(cube)

    base = _record(finished[0])
    assert base["references_without_coordinate"] == []
    border_xy = 1 + min(margins(c)[0] for c in base["classes"])  # one class lies nearer an edge
    border_z = 1 + min(margins(c)[1] for c in base["classes"])
    run = _copy(finished, tmp_path / "run")
    assert main(_args(ten_phantoms, run, [f"discovery.border_xy={border_xy}", f"discovery.border_z={border_z}"])) == 0
    classes = _record(run)["classes"]
    assert all(margins(c)[0] >= border_xy and margins(c)[1] >= border_z for c in classes)

    lung_max = max(lung(c) for c in base["classes"]) / 2  # the module's classes score 0.10 and 0.13
    assert main(_args(ten_phantoms, run, [f"discovery.lung_max={lung_max}"])) == 0
    record = _record(run)
    assert all(lung(c) <= lung_max for c in record["classes"])
    # none of the first reference's 200 draws passes the stricter test: the next reference is taken
    assert record["references_without_coordinate"] == [base["classes"][0]["reference"]]
    capsys.readouterr()
    # a threshold every voxel reaches: no window is mostly lung, and the run says so
    assert main(_args(ten_phantoms, run, ["discovery.lung_threshold_hu=-2000"])) == 1
    assert "only 0 of discovery.num_classes=2 references have a coordinate passing" in capsys.readouterr().err
    # one draw per reference: no reference's single draw passes (200 found one for the first reference)
    assert main(_args(ten_phantoms, run, ["discovery.max_tries=1"])) == 1
    assert "only 0 of discovery.num_classes=2 references" in capsys.readouterr().err


def test_autoencoder_settings_and_read_cpus_change_the_run(finished, tmp_path, ten_phantoms):
    """discovery.ae_epochs, ae_patience, ae_batch_size, ae_workers and ae_lr, each against the module's
    run (TINY: ae_epochs=1, ae_batch_size=2; ae_lr 1e-3, ae_patience 50, ae_workers 1 by default), from
    the auto-encoder record of discovery.json and the exported weights.

    The variant trains at ae_lr=1e-50, a step that is 0 in float32: no weight moves, so every epoch
    after the first has the first one's validation loss, and ae_patience=1 ends the run after epoch 2
    of its ae_epochs=3. model.norm=instance: batch norm's running statistics would change the
    validation loss of unchanged weights.

    data.read_cpus=0.9: the run's volume reads (auto-encoder and embedding) reserve 0.9 CPU each, seen
    in the CPUs Ray has free while it runs: while 1-4 such reads run (of ray_local's 4 CPUs), the
    free CPUs are no multiple of a half; the Train workers (0.5 each) and every other task reserve
    whole or half CPUs.
    """
    import math
    import threading

    import ray
    import torch

    from semgen_ray.models import build_autoencoder
    from semgen_ray.models.weights import read_state_dict

    free, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            free.add(ray.available_resources().get("CPU", 0.0))
            done.wait(0.01)

    base = _record(finished[0])
    run = tmp_path / "run"
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert main(_args(ten_phantoms, run, ["discovery.ae_epochs=3", "discovery.ae_patience=1",
                                              "discovery.ae_lr=1e-50", "discovery.ae_batch_size=1",
                                              "discovery.ae_workers=2", "model.norm=instance",
                                              "data.read_cpus=0.9"])) == 0
    finally:
        done.set()
        watcher.join()
    # data.read_cpus: reads of 0.9 CPU ran (at 1 CPU each, as before, only whole or half CPUs were free)
    assert [c for c in free if abs(2 * c - round(2 * c)) > 1e-3], sorted(free)
    record = _record(run)
    old, new = base["autoencoder"], record["autoencoder"]
    # ae_epochs: the module's run trained the one epoch it was given (patience 50 cannot stop it there)
    assert old["epochs"] == 1 and not old["stopped_early"]
    # ae_patience: one epoch without improvement (epoch 2) ends the run, before its ae_epochs=3
    assert new["epochs"] == 2 and new["stopped_early"] and new["best_epoch"] == 1
    # ae_workers: Ray Train ran two workers (one before)
    assert (old["workers"], new["workers"]) == (1, 2)
    # ae_batch_size: 2 scans a batch before (one worker saw every train patient), one scan a batch now
    assert old["scans_per_epoch"] == base["train_patients"] == record["train_patients"]
    assert old["batches_per_epoch"] == math.ceil(old["scans_per_epoch"] / 2) < old["scans_per_epoch"]
    assert new["batches_per_epoch"] == new["scans_per_epoch"] >= 3

    # ae_lr: the optimizer's rate, and weights: at 1e-3 the export moved from its seeded start, at
    # 1e-50 the export is the seeded start (rank 0 builds the model after torch.manual_seed(seed))
    assert (old["lr"], new["lr"]) == (1e-3, 1e-50)

    def moved(ae):
        state, info = read_state_dict(ae["model_dir"])
        with torch.random.fork_rng():  # the test process's own generator left as it was
            torch.manual_seed(0)
            start = build_autoencoder(None, **info["card"]["lineage"]["training_config"]["model_kwargs"])
        return {name for name, p in start.named_parameters() if not torch.equal(p.detach(), state[name])}

    assert moved(old) and not moved(new)


def test_the_autoencoder_trains_with_deepspeed_through_the_command(finished, tmp_path, ten_phantoms):
    """discovery.ae_engine=deepspeed, ae_precision=bf16, ae_zero_stage=1 (two workers): the auto-encoder
    trains on DeepSpeed in bf16 with one ZeRO-1 optimizer shard per rank, in the checkpoint format of
    pretraining, and the run is another one than the module's (torch, fp32): not reused."""
    from pathlib import Path

    base = _record(finished[0])["autoencoder"]
    assert (base["engine"], base["precision"], base["zero_stage"]) == ("torch", "fp32", 0)
    run = tmp_path / "run"
    assert main(_args(ten_phantoms, run, ["discovery.ae_engine=deepspeed", "discovery.ae_precision=bf16",
                                          "discovery.ae_zero_stage=1", "discovery.ae_workers=2"])) == 0
    record = _record(run)
    ae = record["autoencoder"]
    assert (ae["engine"], ae["precision"], ae["zero_stage"], ae["workers"]) == ("deepspeed", "bf16", 1, 2)
    assert "autoencoder" not in record["reused_steps"]
    shards = sorted(p.name for p in Path(run, "autoencoder_run").rglob("*optim_states.pt"))
    assert shards and {s.split("_mp_rank")[0] for s in shards} == {"bf16_zero_pp_rank_0", "bf16_zero_pp_rank_1"}
    assert 0 <= record["habitus_purity"]["purity"] <= 1  # discovery ran to the end on its embeddings


def test_discover_on_2d_images_with_a_flat_volume_shape(tmp_path, capsys):
    """Semantic Genesis 2D: ``data.volume_shape`` and ``data.cube_size`` flat (z = 1) run self-discovery
    on the store's radiographs: a 2D auto-encoder, the index, class coordinates and film patches as
    (X, Y, 1) boxes; the store's CT volumes are left out. Re-running reuses the finished work."""
    from semgen_ray.config.schema import IngestConfig, PhantomConfig, StoreConfig
    from semgen_ray.phantoms.cohort import write_cohort
    from semgen_ray.store import open_store

    uri = str(tmp_path / "films.zarr")
    for radiographs in (True, False):  # the films, and 4 CT volumes beside them that 2D discovery ignores
        assert write_cohort(PhantomConfig(n=12 if radiographs else 4, seed=0, shape=(64, 64, 32)),
                            StoreConfig(uri=uri), IngestConfig(), progress=False, radiographs=radiographs).ok
    flat = ["data.volume_shape=[32, 64, 1]", "data.cube_size=[16, 16, 1]", "discovery.border_xy=2",
            "discovery.min_patch=10", "discovery.max_patch=14"]
    assert main(_args(uri, tmp_path / "run", flat)) == 0
    rows = read_manifest(str(tmp_path / "run" / "patterns.parquet")).to_pylist()
    films = set(open_store(uri).image_ids)
    assert rows and {r["patient_id"] for r in rows} <= films
    assert all(r["z0"] == 0 and r["z1"] == 1 for r in rows)
    shapes = {r["patient_id"]: r["shape"] for r in open_store(uri).manifest_rows()}
    assert all(0 <= r["x0"] < r["x1"] <= shapes[r["patient_id"]][0] and r["y1"] <= shapes[r["patient_id"]][1]
               for r in rows)
    record = _record(tmp_path / "run")
    assert record["train_patients"] + record["val_patients"] <= 12 and record["habitus_purity"] is not None
    card = json.loads((tmp_path / "run" / "autoencoder_run" / "autoencoder" / "model_card.json").read_text())
    assert card["input"]["size"] == [32, 64]
    assert (tmp_path / "run" / "montages" / "class_000.png").is_file()
    capsys.readouterr()
    assert main(_args(uri, tmp_path / "run", flat)) == 0
    assert "already holds this discovery" in capsys.readouterr().out
