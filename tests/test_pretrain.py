"""The main job's entry point on a tiny phantom cohort (local Ray)."""

import json

import numpy as np
import pytest

from semgen_ray.pretrain import main
from semgen_ray.store import open_store

pytestmark = pytest.mark.usefixtures("ray_local")


def test_pretrain_runs_available_stages_and_reruns_idempotently(tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--set", "phantoms.n=3", "--stages", "data,stream",
            "--set", "phantoms.shape=[64, 64, 32]", "--set", "data.volume_shape=[32, 32, 16]"]
    assert main(args + ["--set", "train.objective=inpainting_classification"]) == 0
    out = capsys.readouterr().out
    assert "run directory:" in out
    assert f"stream check: {tmp_path / 'run' / 'stream.json'}" in out   # says where the record went
    store = open_store(tmp_path / "run" / "store.zarr")
    assert store.patient_ids == ["phantom_00000", "phantom_00001", "phantom_00002"]
    assert store.has_label("phantom_00000")
    assert set(store.shapes().values()) == {(64, 64, 32)}  # phantoms.shape (cpu-tiny: 128x128x64)
    stream = json.loads((tmp_path / "run" / "stream.json").read_text())
    assert stream["volumes"]["rows"] == 3 and stream["cubes"]["rows"] == 3 * 8
    assert stream["cubes"]["shape"] == [32, 32, 16]
    assert 0.0 < stream["cubes"]["mean_intensity"] < 1.0
    assert stream["restoration_pairs"]["rows"] == 24 and stream["restoration_pairs"]["preset"] == "sg"
    # sg deforms every input elastically and the target is the un-deformed cube: in the phantoms'
    # textured tissue nearly every voxel differs (0.98 measured)
    assert 0.8 <= stream["restoration_pairs"]["fraction_voxels_changed"] <= 1.0
    assert (tmp_path / "run" / "config.yaml").is_file()
    # Issue 16: the stream check corrupts with the policy training gets, the objective's fields included
    # (in-painting only), not with the preset and the user's overrides alone.
    from semgen_ray.config import load_config
    from semgen_ray.stages.pretraining import loop_config

    trains = loop_config(load_config(tmp_path / "run" / "config.yaml"), 3, False, None)["corruption_policy"]
    assert stream["restoration_pairs"]["policy"] == trains.to_dict()
    assert stream["restoration_pairs"]["policy"]["one_of_weights"] == [0.0, 0.0, 1.0, 0.0]
    # A second run finds every phantom unchanged.
    assert main(args + ["--stages", "data"]) == 0
    assert "3 unchanged (skipped)" in capsys.readouterr().out
    # The same 24 cubes without elastic deformation: one of four corruptions each (p = 1/4). Out-painting
    # replaces 78-92 % of a 32x32x16 cube and the Bezier map changes most voxels; in-painting (<= 3 %)
    # and 5 shuffled blocks (<= 0.3 %) change little. About half the cubes change almost entirely: near
    # 0.4 (0.41 measured); [0.1, 0.85] holds unless under 5 or over 19 of the 24 cubes drew out-painting
    # or the Bezier map (p = 0.0015). Without any corruption nothing may count as changed.
    fractions = {}
    for name, overrides in (("one corruption", "{elastic: false}"),
                            ("none", "{elastic: false, mode: chain, shuffle_rate: 0, nonlinear_rate: 0, "
                                     "paint_rate: 0}")):
        assert main(args + ["--stages", "stream", "--set", f"train.corruption_overrides={overrides}"]) == 0
        stream = json.loads((tmp_path / "run" / "stream.json").read_text())
        assert stream["restoration_pairs"]["rows"] == 24
        fractions[name] = stream["restoration_pairs"]["fraction_voxels_changed"]
    assert 0.1 <= fractions["one corruption"] <= 0.85
    assert fractions["none"] == 0.0


def test_pretrain_streams_an_ingested_store(tmp_path, real_data, capsys):
    from semgen_ray.ingest import ingest

    assert ingest([real_data / "lidc_slabs"], tmp_path / "lidc.zarr", progress=False).ok
    assert main(["--run-dir", str(tmp_path / "run"), "--store", str(tmp_path / "lidc.zarr"),
                 "--stages", "data,stream", "--set", "data.volume_shape=[32, 32, 8]", "--set", "data.cube_size=[32, 32, 8]",
                 # 8 slices are too thin for the reference's 3-voxel painting margin
                 "--set", "train.corruption_overrides={paint_margin: 1}"]) == 0
    assert "using the existing store" in capsys.readouterr().out
    stream = json.loads((tmp_path / "run" / "stream.json").read_text())
    assert stream["patients"] == 3 and stream["cubes"]["rows"] == 24
    # data.volume_shape / data.cube_size: the stage checks every streamed batch against them
    assert stream["volumes"]["shape"] == [32, 32, 8] == stream["cubes"]["shape"]


def test_phantoms_seed_makes_another_cohort(tmp_path):
    """phantoms.seed: the data stage fills the run folder's store with patient i of cohort ``seed``
    (generate_patient(i, cohort_seed=seed)), other volumes than the default seed 0's."""
    import numpy as np

    from semgen_ray.phantoms import generate_patient

    assert main(["--run-dir", str(tmp_path / "run"), "--stages", "data", "--set", "phantoms.n=1",
                 "--set", "phantoms.shape=[64, 64, 32]", "--set", "phantoms.seed=7"]) == 0
    store = open_store(tmp_path / "run" / "store.zarr")
    assert store.patient_ids == ["phantom_00000"]
    stored = store.read("phantom_00000")[0]
    seven, zero = (generate_patient(0, cohort_seed=seed, shape=(64, 64, 32))[0].array for seed in (7, 0))
    assert np.array_equal(stored, seven) and not np.array_equal(stored, zero)


def test_pretrain_refuses_unknown_stages_and_bad_config(tmp_path, capsys):
    assert main(["--run-dir", str(tmp_path), "--stages", "data,finetune"]) == 1
    assert "unknown stage(s) ['finetune']" in capsys.readouterr().err
    assert main(["--set", "train.lr=-1"]) == 2
    assert "train.lr must be positive" in capsys.readouterr().err


def test_pretrain_refuses_a_corruption_that_does_not_fit_the_cube(tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--stages", "data,stream", "--set", "phantoms.n=2",
            "--set", "phantoms.shape=[64, 64, 32]",
            "--set", "data.volume_shape=[32, 32, 16]", "--set", "data.cube_size=[32, 32, 8]"]
    assert main(args) == 1
    assert "train.corruption does not fit (32, 32, 8) cubes" in capsys.readouterr().err


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path, capsys):
    # the whole chain, its reuse of finished stages and --resume run end to end in
    # tests/cluster/test_object_store_run.py (run folder and store on an S3 server)
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def _snapshot(root):
    """Every file under ``root`` with its size, mtime and SHA-256."""
    import hashlib

    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_store_named_with_store_is_read_never_written(tmp_path, make_phantom_store, monkeypatch, capsys):
    """Issue 15: a user's phantom store (2 patients of 64x64x32) is used as it is, not refilled with
    the config's 40 phantoms of 128x128x64; a relative --store is the user's path, not the run's."""
    import yaml

    mine = tmp_path / "mine.zarr"
    make_phantom_store(mine, n=2, shape=(64, 64, 32))
    before = _snapshot(mine)
    monkeypatch.chdir(tmp_path)
    for store in ("mine.zarr", str(mine)):
        assert main(["--run-dir", "run", "--store", store, "--stages", "data"]) == 0
        out = capsys.readouterr().out
        assert f"using the existing store {mine}: 2 patients (read only)" in out
        assert "'patients': 2, 'generated': 0" in out
        assert _snapshot(mine) == before
    assert open_store(mine).patient_ids == ["phantom_00000", "phantom_00001"]
    assert set(open_store(mine).shapes().values()) == {(64, 64, 32)}
    assert not (tmp_path / "run" / "mine.zarr").exists()
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["store"]["uri"] == str(mine)


def _fake_training(calls, steps=60, interrupt_at=None):
    """Stands in for run_pretraining: the stage's record logic is under test, not the training."""
    def run_pretraining(config, store_uri, manifest, out, force=False, fault_injection=None):
        calls.append(force)
        if interrupt_at is not None:
            raise KeyboardInterrupt(f"Ctrl-C at step {interrupt_at}")
        import os

        export = f"{out}/export"
        os.makedirs(export, exist_ok=True)
        with open(f"{export}/model_card.json", "w") as f:
            f.write('{"checkpoint": "pretrain/step_%d"}' % steps)
        return {"export": export, "report": f"{out}/report", "best_val_loss": 0.5, "steps": steps,
                "epochs": 10, "fit_seconds": 1.0}
    return run_pretraining


def test_a_forced_train_stage_that_is_interrupted_is_never_reused(tmp_path, monkeypatch, capsys):
    """Issue 15: `--stages train --force`, Ctrl-C at step 24, then `--resume`: the stage runs again
    (resuming from its checkpoints) instead of reporting the old 60-step run it replaced."""
    import os

    import semgen_ray.stages.pretraining

    run = tmp_path / "run"
    (run / "discovery").mkdir(parents=True)
    (run / "discovery" / "patterns.parquet").write_bytes(b"a pattern manifest")
    args = ["--run-dir", str(run), "--stages", "train"]
    calls = []
    monkeypatch.setattr(semgen_ray.stages.pretraining, "run_pretraining", _fake_training(calls))
    assert main(args) == 0 and main(args) == 0  # the second run reuses the first
    assert calls == [False] and "already holds this pretraining" in capsys.readouterr().out
    assert json.loads((run / "train" / "train.json").read_text())["steps"] == 60
    # Issue 16: the key is the manifest's content, not its timestamps; a changed export is not reused
    os.utime(run / "discovery" / "patterns.parquet", (1, 1))
    assert main(args) == 0 and calls == [False] and "already holds this pretraining" in capsys.readouterr().out
    (run / "train" / "export" / "model_card.json").write_text('{"checkpoint": "elsewhere"}')
    assert main(args) == 0 and calls == [False, False] and "already holds" not in capsys.readouterr().out

    monkeypatch.setattr(semgen_ray.stages.pretraining, "run_pretraining", _fake_training(calls, interrupt_at=24))
    # Ctrl-C: one line saying how to continue (the stages this command ran), no traceback
    assert main(args + ["--force"]) == 130
    assert f"interrupted: continue with `python -m semgen_ray.pretrain --resume {run} --stages train`" \
        in capsys.readouterr().err
    assert calls == [False, False, True]
    # the record and the export that pointed at the deleted checkpoints are gone
    assert not (run / "train" / "train.json").exists() and not (run / "train" / "export").exists()

    monkeypatch.setattr(semgen_ray.stages.pretraining, "run_pretraining", _fake_training(calls, steps=61))
    assert main(["--resume", str(run), "--stages", "train"]) == 0
    out = capsys.readouterr().out
    assert "already holds" not in out and calls == [False, False, True, False]
    assert "'steps': 61" in out and json.loads((run / "train" / "train.json").read_text())["steps"] == 61


def test_a_forced_discovery_deletes_its_records_before_it_starts(tmp_path, make_phantom_store, monkeypatch, capsys):
    """Issue 15: an interrupted `--stages discover --force` leaves no record that a later run reuses."""
    import semgen_ray.discovery.autoencoder_training as ae

    store = make_phantom_store(tmp_path / "s.zarr", n=8, shape=(64, 64, 32))  # 4 train, 3 val
    disc = tmp_path / "run" / "discovery"
    disc.mkdir(parents=True)
    records = ("discovery.json", "patterns.parquet", "autoencoder.json", "embeddings.parquet")
    for name in records:
        (disc / name).write_text("{}")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("Ctrl-C while the auto-encoder trains")

    monkeypatch.setattr(ae, "train_autoencoder", interrupted)
    assert main(["--run-dir", str(tmp_path / "run"), "--store", store, "--stages", "discover", "--force",
                 "--set", "discovery.k_train=2", "--set", "discovery.k_val=2", "--set", "discovery.num_classes=4"]) == 130
    assert "--resume" in capsys.readouterr().err
    assert [name for name in records if (disc / name).exists()] == []


FLAT = ["--set", "data.volume_shape=[32, 64, 1]", "--set", "data.cube_size=[16, 16, 1]",
        "--set", "phantoms.shape=[64, 64, 32]", "--set", "phantoms.n=12", "--set", "model.width=4",
        "--set", "discovery.border_xy=2", "--set", "discovery.min_patch=10", "--set", "discovery.max_patch=14",
        "--set", "discovery.num_classes=2", "--set", "discovery.k_train=3", "--set", "discovery.k_val=1",
        "--set", "discovery.ae_epochs=1"]


def test_the_paper_2d_preset_asks_for_a_store_of_radiographs(tmp_path, capsys):
    """The paper's 2D sizes (224×224 patches) do not fit the phantom cohort's films: without a store of
    radiographs the run is refused before anything is written, saying what to do."""
    assert main(["--run-dir", str(tmp_path / "paper-2d"), "--config", "paper-2d"]) == 1
    err = capsys.readouterr().err
    assert "films (phantoms.shape [512, 512, 192]) are 192×512 pixels, smaller than data.cube_size [224, 224]" in err
    assert "--kind 2d" in err and not (tmp_path / "paper-2d").exists()


def test_the_paper_2d_evaluation_asks_for_a_target_store_of_radiographs(tmp_path, capsys):
    """Its target tasks are 224×224 patches: the default target films (phantoms of the preset's shape)
    are refused before any arm is pretrained or any film generated, saying what to give instead."""
    from semgen_ray.evaluate.__main__ import main as evaluate

    assert evaluate(["--run-dir", str(tmp_path / "paper-2d"), "--config", "paper-2d"]) == 1
    err = capsys.readouterr().err
    assert "films (phantoms of [512, 512, 192]) are 192×512 pixels, smaller than data.cube_size [224, 224]" in err
    assert "give evaluate.target_store" in err
    assert not (tmp_path / "paper-2d" / "target.zarr").exists() and not (tmp_path / "paper-2d" / "train").exists()


@pytest.mark.slow
def test_a_run_on_2d_images_generates_radiographs_discovers_pretrains_and_evaluates_a_2d_unet(tmp_path, capsys):
    """A flat volume shape: the data stage fills the run's store with the phantoms' radiographs,
    discovery runs on them, pretraining trains a 2D U-Net on the film patches (Semantic Genesis 2D),
    and the evaluation fine-tunes it and scratch on patches of another cohort's films; the stage not
    built for 2D images is refused before anything is written."""
    import torch

    from semgen_ray.evaluate.report import read_csv
    from semgen_ray.models import load_pretrained

    assert main(["--run-dir", str(tmp_path / "refused"), "--stages", "data,stream", *FLAT]) == 1
    assert "2D stream is not built yet" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    train = ["--set", "train.max_epochs=2", "--set", "train.batch_size=4", "--set", "train.num_workers=1"]
    assert main(["--run-dir", str(tmp_path / "run"), *FLAT, *train]) == 0
    store = open_store(tmp_path / "run" / "store.zarr")
    assert store.patient_ids == [] and store.image_ids == [f"xray_{i:05d}" for i in range(12)]
    rows = json.loads((tmp_path / "run" / "discovery" / "discovery.json").read_text())
    assert rows["cubes"] > 0 and rows["train_patients"] + rows["val_patients"] <= 12
    record = json.loads((tmp_path / "run" / "train" / "train.json").read_text())
    assert record["epochs"] == 2 and record["train_cubes"] + record["val_cubes"] == rows["cubes"]
    assert all(np.isfinite(h["val_loss"]) for h in record["history"])
    card = json.loads((tmp_path / "run" / "train" / "export" / "model_card.json").read_text())
    assert card["input"]["size"] == [16, 16] and card["input"]["layout"] == "N C x y"
    assert card["architecture"]["spatial_dims"] == 2
    model = load_pretrained(tmp_path / "run" / "train" / "export").eval()
    with torch.no_grad():
        restored, logits = model(torch.rand(3, 1, 16, 16))
    assert restored.shape == (3, 1, 16, 16) and logits.shape == (3, 2)

    evaluate = ["--run-dir", str(tmp_path / "run"), "--stages", "evaluate", *FLAT, *train,
                *[a for s in ("evaluate.target_patients=48", "evaluate.min_voxels=1", "evaluate.trials=2",
                              "evaluate.max_steps=4", "evaluate.eval_every=2", "evaluate.patience=2",
                              "evaluate.lr_patience=1", "evaluate.arms=[scratch, semantic_genesis]",
                              "evaluate.negatives=matched") for a in ("--set", s)]]
    assert main(evaluate) == 1  # the 3D presets' physical cube size does not apply to films
    assert "set evaluate.cube_mm: null" in capsys.readouterr().err
    assert main([*evaluate, "--set", "evaluate.cube_mm=null"]) == 0
    films = open_store(tmp_path / "run" / "target.zarr")
    assert films.patient_ids == [] and len(films.image_ids) == 48  # another cohort's radiographs
    record = json.loads((tmp_path / "run" / "evaluate" / "evaluate.json").read_text())
    assert record["arms"] == {"scratch": None, "semantic_genesis": "train/export"}  # the 2D export, not retrained
    with np.load(tmp_path / "run" / "evaluate" / "tasks_segmentation.npz") as z:
        assert z["train_x"].shape[1:] == (1, 16, 16) and z["train_y"].shape[1:] == (1, 16, 16)
    rows = read_csv(tmp_path / "run" / "evaluate" / "results.csv")
    assert sorted((r["task"], r["arm"], r["seed"]) for r in rows) == sorted(
        (t, a, s) for t in ("classification", "segmentation") for a in ("scratch", "semantic_genesis") for s in (0, 1))
    assert "patches [16, 16] pixels of 2D images" in (tmp_path / "run" / "evaluate" / "report.md").read_text()
