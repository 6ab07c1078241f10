"""restoration_pairs: cubes → (corrupted input, target), seeded per sample, inside Ray Data."""

import numpy as np

from semgen_ray.data import read_subvolumes, restoration_pairs


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"cube": rng.random((n, 32, 32, 16), dtype=np.float32), "box_index": np.arange(10, 10 + n),
            "patient_id": np.array([f"P{i}" for i in range(n)], dtype=object)}


def test_pairs_are_seeded_per_sample_not_per_batch():
    batch = _batch()
    out = restoration_pairs(batch, policy="mg", run_seed=3, epoch=1)
    assert out["input"].shape == out["target"].shape == (6, 1, 32, 32, 16)
    assert "cube" not in out and list(out["patient_id"]) == list(batch["patient_id"])
    assert np.all((out["input"] >= 0) & (out["input"] <= 1))
    again = restoration_pairs(batch, policy="mg", run_seed=3, epoch=1)
    assert np.array_equal(out["input"], again["input"])
    # Sample 4 alone gets exactly the corruption it got inside the batch.
    alone = restoration_pairs({k: v[4:5] for k, v in batch.items()}, policy="mg", run_seed=3, epoch=1)
    assert np.array_equal(alone["input"][0], out["input"][4])
    other_epoch = restoration_pairs(batch, policy="mg", run_seed=3, epoch=2)
    assert not np.array_equal(other_epoch["input"], out["input"])


def test_sg_target_is_the_original_cube():
    batch = _batch()
    out = restoration_pairs(batch, policy="sg")
    assert np.allclose(out["target"][:, 0], batch["cube"])
    assert not np.allclose(out["input"][:, 0], batch["cube"])


def test_pairs_through_ray_data(data_ray, store_uri):
    """The Ray Data workers get the policy object itself (pickled), not strings to rebuild it from."""
    from semgen_ray.transforms import policy_from_preset

    policy = policy_from_preset("sg", one_of_weights=(0, 0, 1, 0))
    ds = read_subvolumes(store_uri, size=(32, 32, 16), per_patient=2, seed=0,
                         columns=("cube", "patient_id", "box_index"))
    pairs = ds.map_batches(restoration_pairs, batch_format="numpy", batch_size=4,
                           fn_kwargs={"policy": policy, "run_seed": 7})
    rows = pairs.take_all()
    assert len(rows) == 6
    assert all(r["input"].shape == (1, 32, 32, 16) for r in rows)
    by_id = {r["box_index"]: r for r in rows}
    direct = restoration_pairs({"cube": np.stack([by_id[i]["target"][0] for i in sorted(by_id)]),
                                "box_index": np.array(sorted(by_id))}, policy=policy, run_seed=7)
    assert np.allclose(direct["input"], np.stack([by_id[i]["input"] for i in sorted(by_id)]), atol=1e-6)
    sg = restoration_pairs({"cube": np.stack([by_id[i]["target"][0] for i in sorted(by_id)]),
                            "box_index": np.array(sorted(by_id))}, policy="sg", run_seed=7)
    assert not np.allclose(sg["input"], direct["input"], atol=1e-6)  # the workers used the given policy


def test_an_epoch_clock_seeds_each_pass_and_passes_warmup_epochs_through(data_ray):
    """With an epoch clock the corruption of a pass is that of its epoch (run seed, epoch, sample id):
    reproducible, new every epoch; warm-up epochs get the uncorrupted cube; ``keep_cube`` keeps it."""
    import ray

    from semgen_ray.data.epoch_clock import create_epoch_clock, set_epoch

    name, clock = create_epoch_clock()
    try:
        batch = _batch()
        kwargs = {"policy": "mg", "run_seed": 3, "epoch": None, "epoch_clock": name, "warmup_epochs": 1}
        set_epoch(name, 1)
        warm = restoration_pairs(dict(batch), **kwargs)
        assert "input" not in warm and np.array_equal(warm["cube"], batch["cube"])
        set_epoch(name, 2)
        second = restoration_pairs(dict(batch), **kwargs)
        assert np.array_equal(second["input"], restoration_pairs(batch, policy="mg", run_seed=3, epoch=2)["input"])
        assert "seed" not in second and "cube" not in second
        set_epoch(name, 3)
        third = restoration_pairs(dict(batch), **kwargs, keep_cube=True)
        assert not np.array_equal(third["input"], second["input"]) and np.array_equal(third["cube"], batch["cube"])
    finally:
        ray.kill(clock)
