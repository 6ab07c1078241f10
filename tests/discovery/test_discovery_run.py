"""``python -m semgen_ray.discover`` end to end on a small phantom store (local Ray, tiny sizes)."""

import json

import numpy as np
import pytest

from semgen_ray.discover import main
from semgen_ray.discovery.manifest import read_manifest

pytestmark = pytest.mark.usefixtures("ray_local")

TINY = ["model.width=4", "data.volume_shape=[32, 32, 16]", "data.cube_size=[16, 16, 8]",
        "discovery.num_classes=2", "discovery.k_train=3", "discovery.k_val=1", "discovery.border_xy=4",
        "discovery.border_z=2", "discovery.min_patch=12", "discovery.max_patch=20",
        "discovery.max_offset=2", "discovery.ae_epochs=1", "discovery.ae_batch_size=2"]


def _args(store, out, extra=()):
    return ["--store", store, "--out", str(out), *[a for s in (*TINY, *extra) for a in ("--set", s)]]


def test_discover_writes_a_valid_manifest_montages_and_record(tmp_path, ten_phantoms, capsys):
    assert main(_args(ten_phantoms, tmp_path / "run")) == 0
    assert "pattern manifest:" in capsys.readouterr().out
    table = read_manifest(str(tmp_path / "run" / "patterns.parquet"))
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
    record = json.loads((tmp_path / "run" / "discovery.json").read_text())
    assert record["index"]["method"] == "exact" and len(record["classes"]) == 2
    purity = record["habitus_purity"]  # phantoms carry their body-type cluster
    assert {"purity", "chance", "chance_selected", "all_references"} <= set(purity)
    assert 0 <= purity["chance"] < 1 and 0 <= purity["all_references"]["purity"] <= 1
    assert (tmp_path / "run" / "montages" / "class_000.png").stat().st_size > 1000
    assert (tmp_path / "run" / "neighbour_distances.png").is_file()


def test_discover_refuses_too_few_patients_for_k(tmp_path, ten_phantoms, capsys):
    assert main(_args(ten_phantoms, tmp_path / "run", ["discovery.k_train=50"])) == 1
    assert "fewer than discovery.k_train=50" in capsys.readouterr().err


def test_discover_is_deterministic_and_reuses_finished_work(tmp_path, ten_phantoms, capsys):
    """Re-running with the same seed reuses the auto-encoder and embeddings and rebuilds the same manifest."""
    run = tmp_path / "run"
    assert main(_args(ten_phantoms, run)) == 0
    first = read_manifest(str(run / "patterns.parquet"))
    record = json.loads((run / "discovery.json").read_text())
    assert record["reused_steps"] == []
    capsys.readouterr()
    assert main(_args(ten_phantoms, run)) == 0  # finished: nothing redone
    assert "already holds this discovery" in capsys.readouterr().out
    (run / "patterns.parquet").unlink()
    (run / "discovery.json").unlink()
    assert main(_args(ten_phantoms, run)) == 0
    again = json.loads((run / "discovery.json").read_text())
    assert again["reused_steps"] == ["autoencoder", "embedding"]
    assert read_manifest(str(run / "patterns.parquet")).equals(first)
    assert again["classes"] == record["classes"] and again["config_hash"] == record["config_hash"]
    # another seed is another discovery (new references), not a reuse
    assert main(_args(ten_phantoms, run, ["seed=1"])) == 0
    assert json.loads((run / "discovery.json").read_text())["config_hash"] != record["config_hash"]


def test_discover_with_a_pca_hnsw_index_records_it(tmp_path, ten_phantoms):
    """``discovery.index=hnsw`` with ``hnsw_pca_dim``: the saved index and the record say what was used."""
    from semgen_ray.discovery.index import EmbeddingIndex

    run = tmp_path / "run"
    assert main(_args(ten_phantoms, run, ["discovery.index=hnsw", "discovery.hnsw_pca_dim=4"])) == 0
    full = json.loads((run / "discovery.json").read_text())
    record = full["index"]
    assert record["method"] == "hnsw" and record["pca_dim"] == 4
    assert record["val_pca_dim"] == 0  # 3 validation patients: too few for 4 components
    assert 0 < record["pca_variance"] <= 1
    # measured and recorded (its value is not checked: a 1-epoch auto-encoder embeds these alike)
    assert 0 <= record["recall"]["recall_at_k"] <= 1 and record["recall"]["k"] == 3
    index = EmbeddingIndex.load(run / "index_train")
    assert index.pca_dim == 4 and index.dim == full["embedding"]["dim"] > 4


def test_habitus_purity_chance_is_that_of_random_neighbours_from_the_pool():
    """Chance = mean over references of (n_c - 1) / (N - 1) in the pool, not the squared cluster
    shares of the selected patients (which rise with the purity itself)."""
    from semgen_ray.discovery.run import habitus_purity

    class Store:
        def meta(self, pid):
            return {"extra": {"habitus": int(pid[1])}}

    pool = [f"p{c}{i}" for c in range(4) for i in range(5)]  # 4 clusters of 5
    perfect = habitus_purity(Store(), ["p00", "p10"], [["p00", "p01", "p02"], ["p10", "p11", "p12"]], pool=pool)
    assert perfect["purity"] == 1.0 and perfect["chance"] == pytest.approx(4 / 19, abs=1e-4)
    assert perfect["chance_selected"] == 0.5  # two clusters among the selected: inflated
