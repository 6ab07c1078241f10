"""Step-based fine-tuning (docs/method.md §6.2) on synthetic cubes: budget, validation schedule, plateau LR,
early stopping, best state, the linear head (§6.1), collapse flags and determinism. Tiny: width 4,
16×16×8 cubes, a handful of samples, one thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semgen_ray.evaluate import finetune
from semgen_ray.evaluate.finetune import ROW_KEYS, is_collapsed, run_trial
from semgen_ray.evaluate.tasks import TaskData

CUBE = (16, 16, 8)
MODEL = {"width": 4, "depth": 4, "norm": "batch", "head": "torch", "in_channels": 1, "out_channels": 1,
         "embed_dim": None, "out_activation": "sigmoid"}
FAST = {"lr": 1e-3, "batch_size": 2, "eval_every": 2, "patience": 50, "lr_patience": 40, "threads": 1}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _split(rng, n, task, patients, constant=False):
    x = np.zeros((n, 1, *CUBE), np.float32) if constant else rng.random((n, 1, *CUBE), dtype=np.float32) * 0.2
    if task == "classification":
        y = np.arange(n) % 2
        if not constant:
            x[y == 1, :, 6:10, 6:10, 2:6] += 0.8  # a bright "nodule" in the positives
        y = y.astype(np.int64)
    else:
        y = np.zeros((n, 1, *CUBE), np.uint8)
        for i in range(n):
            if i % 3:  # every third cube has no foreground
                a = 3 + i % 6
                y[i, :, a:a + 5, a:a + 4, 2:6] = 1
        x = x + 0.8 * y
    return {"x": x.astype(np.float32), "y": y, "patient": np.array([f"{patients}{i // 2}" for i in range(n)])}


def make_data(task, n_train=6, n_val=4, n_test=6, constant=False, seed=0) -> TaskData:
    rng = np.random.default_rng(seed)
    return TaskData(task, {"train": _split(rng, n_train, task, "tr", constant),
                           "val": _split(rng, n_val, task, "va", constant),
                           "test": _split(rng, n_test, task, "te", constant)})


def _fake_val_losses(monkeypatch, losses):
    """Replace the validation loss by ``losses`` (one per validation); record a checksum of the model's
    weights at each validation and at the test pass."""
    real = finetune._evaluate
    seen = {"val": [], "test": []}

    def fake(built, task, x, y, batch, device="cpu"):
        loss, pred = real(built, task, x, y, batch, device)
        checksum = float(sum(p.detach().double().sum() for p in built.engine.module.parameters()))
        if x.shape[0] == 4:  # the validation split (train 6, val 4, test 6)
            seen["val"].append(checksum)
            return losses[len(seen["val"]) - 1], pred
        seen["test"].append(checksum)
        return loss, pred

    monkeypatch.setattr(finetune, "_evaluate", fake)
    return seen


# ------------------------------------------------------------------------------------ schedule

def test_step_budget_and_validation_schedule():
    """5 training cubes, batch 2: passes of 2 + 2 (+ a skipped single cube); 7 steps, validations at
    steps 3, 6 and at the end (7)."""
    data = make_data("classification", n_train=5)
    row = run_trial(data, "classification", "scratch", None, 0, MODEL, max_steps=7,
                    **{**FAST, "eval_every": 3})
    assert set(row) == set(ROW_KEYS) - {"dice", "iou", "mean_iou"}
    assert row["steps"] == 7 and row["validations"] == 3 and row["best_step"] in (3, 6, 7)
    assert row["train_cases"] == 5 and row["test_cases"] == 6 and row["test_pos"] == 3 and row["test_neg"] == 3
    assert 0 <= row["auc"] <= 1 and row["lr_final"] == 1e-3 and row["label_fraction"] == 1.0


def test_single_training_cube_does_not_loop_forever():
    data = make_data("classification", n_train=1)
    row = run_trial(data, "classification", "scratch", None, 0, MODEL, max_steps=3, **FAST)
    assert row["steps"] == 3 and row["train_cases"] == 1


def test_lr_patience_must_be_below_patience():
    with pytest.raises(ValueError, match="lr_patience"):
        run_trial(make_data("classification"), "classification", "scratch", None, 0, MODEL,
                  max_steps=4, **{**FAST, "patience": 3, "lr_patience": 3})


def test_plateau_halves_lr_then_stops_early_and_tests_the_best_state(monkeypatch):
    """Validation losses 1.0, 0.5, then worse: best at validation 2; 2 bad validations halve the LR
    (lr_patience 2), 3 bad ones stop the trial (patience 3) at validation 5, long before max_steps."""
    seen = _fake_val_losses(monkeypatch, [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    row = run_trial(make_data("classification"), "classification", "scratch", None, 0, MODEL,
                    max_steps=100, **{**FAST, "patience": 3, "lr_patience": 2})
    assert row["validations"] == 5 and row["steps"] == 10 and row["best_step"] == 4
    assert row["val_loss"] == 0.5 == min([1.0, 0.5, 0.6, 0.7, 0.8])
    assert row["lr_final"] == pytest.approx(0.5e-3)
    assert len(seen["test"]) == 1
    assert seen["test"][0] == seen["val"][1] != seen["val"][-1]  # the test saw the best weights


def test_no_improvement_possible_stops_after_patience_validations():
    """lr 0 and instance norm (no running statistics): the weights never change, so the validation
    loss is constant; the first validation is the best, ``patience`` more end the trial."""
    cfg = {**MODEL, "norm": "instance"}
    row = run_trial(make_data("classification"), "classification", "scratch", None, 0, cfg, max_steps=100,
                    **{**FAST, "lr": 0.0, "patience": 3, "lr_patience": 1})
    assert row["validations"] == 4 and row["steps"] == 8 and row["best_step"] == 2


# ------------------------------------------------------------------------------------ heads

def test_linear_head_is_one_linear_layer_on_the_pooled_bottleneck():
    from semgen_ray.models import build_model
    from semgen_ray.models.heads import LinearHead

    model = build_model(MODEL, num_classes=2, head="linear").eval()
    head = model.clc_out
    assert isinstance(head, LinearHead) and model.num_classes == 2
    c = model.bottleneck_channels
    assert c == 64 and sum(p.numel() for p in head.parameters()) == c * 2 + 2
    assert [type(m) for m in head.modules() if list(m.parameters(recurse=False))] == [torch.nn.Linear]
    x = torch.rand(3, 1, *CUBE)
    with torch.no_grad():
        bottleneck = model.encode(x)[-1]
        want = head.fc(bottleneck.mean(dim=(2, 3, 4)))
        assert torch.allclose(model(x)[1], want, atol=1e-6)


def test_pretrained_export_loads_under_the_linear_head(tmp_path):
    """An export with a torch head (pseudo-classes) loads with ignore_head: encoder weights copied,
    the linear head fresh."""
    from semgen_ray.models import build_model, export_weights

    torch.manual_seed(3)
    pre = build_model(MODEL, num_classes=5)
    export_weights(pre, tmp_path / "pre", {"input_size": list(CUBE)})
    model = finetune._model(MODEL, "classification", str(tmp_path / "pre"), "linear")
    assert model.clc_out.kind == "linear" and model.num_classes == 2
    for name, value in pre.state_dict().items():
        if not name.startswith("clc_out."):
            assert torch.equal(model.state_dict()[name], value), name
    row = run_trial(make_data("classification"), "classification", "pre", str(tmp_path / "pre"), 0, MODEL,
                    max_steps=2, **FAST)
    assert row["arm"] == "pre" and row["steps"] == 2


def _first_training_state(monkeypatch):
    """Record the model's state dict when the first training batch reaches it (before any step)."""
    real, seen = finetune._forward, []

    def spy(model, task, x):
        if not seen and model.training:
            seen.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        return real(model, task, x)

    monkeypatch.setattr(finetune, "_forward", spy)
    return seen


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_trials_start_from_the_exported_encoder_with_a_fresh_head(task, tmp_path, monkeypatch):
    """What a Tune trial fine-tunes, read when its first batch arrives: every encoder (and, for
    segmentation, decoder) tensor equals the export's ``model.safetensors``; the classification head
    is not loaded, although the export holds one of the very same kind and shape (linear, 2 classes):
    it is the seeded fresh head the scratch arm of that seed starts from."""
    from safetensors.torch import load_file

    from semgen_ray.evaluate import trials
    from semgen_ray.models import build_model, export_weights

    torch.manual_seed(11)
    pre = build_model(MODEL, num_classes=2, head="linear")
    with torch.no_grad():  # away from any fresh initialisation, BatchNorm statistics included
        for v in pre.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.rand_like(v) + 0.5)
    export_weights(pre, tmp_path / "pre", {"input_size": list(CUBE)})
    exported = load_file(str(tmp_path / "pre" / "model.safetensors"))
    head = {k for k in exported if k.startswith("clc_out.")}
    assert head  # the export has a head that would fit

    data = make_data(task)
    seen = _first_training_state(monkeypatch)
    reported = []
    monkeypatch.setattr("ray.tune.report", reported.append)
    settings = {"model": MODEL, "head": "linear", "threads": 1, "weights": {"pre": str(tmp_path / "pre")},
                **{k: v for k, v in FAST.items() if k != "threads"}, "max_steps": 1}
    trials._trial({"settings": settings, "cell": (task, 1.0, 0), "arm": "pre"}, {task: data})
    assert len(reported) == 1 and reported[0]["arm"] == "pre" and reported[0]["steps"] == 1
    start = seen[0]
    body = set(start) - {k for k in start if k.startswith("clc_out.")}
    assert body == set(exported) - head  # encoder and decoder: every tensor of the export, nothing else
    for key in body:
        assert torch.equal(start[key], exported[key]), key
    if task == "classification":
        seen.clear()
        run_trial(data, task, "scratch", None, 0, MODEL, head="linear", **{**FAST, "max_steps": 1})
        scratch = seen[0]
        assert {k for k in start if k.startswith("clc_out.")} == head
        for key in head:
            assert not torch.equal(start[key], exported[key]), key
            assert torch.equal(start[key], scratch[key]), key  # the seed's fresh head, as scratch's
    else:
        assert not any(k.startswith("clc_out.") for k in start)


@pytest.mark.parametrize("head", ["torch", "keras"])
def test_pretraining_heads_still_fine_tune(head):
    row = run_trial(make_data("classification"), "classification", "scratch", None, 0, MODEL, head=head,
                    max_steps=2, **FAST)
    assert row["steps"] == 2 and 0 <= row["auc"] <= 1


# ------------------------------------------------------------------------------------ collapse

def test_collapse_rule():
    assert is_collapsed("classification", np.full(8, 0.37))
    assert not is_collapsed("classification", np.linspace(0.2, 0.8, 8))
    near_prior = 0.5 + np.linspace(-0.02, 0.02, 8)  # the prior's loss, barely varying probabilities
    assert is_collapsed("classification", near_prior, best_val=0.6905, prior_loss=0.6931)
    # the prior's loss but spread-out probabilities that rank the cases: not collapsed
    assert not is_collapsed("classification", np.linspace(0.2, 0.8, 8), best_val=0.6905, prior_loss=0.6931)
    assert not is_collapsed("classification", np.linspace(0.2, 0.8, 8), best_val=0.4, prior_loss=0.6931)
    empty, full = np.full((3, 1, 4, 4, 2), 0.2), np.full((3, 1, 4, 4, 2), 0.9)
    assert is_collapsed("segmentation", empty) and is_collapsed("segmentation", full)
    some = empty.copy()
    some[1, 0, 1, 1, 1] = 0.7
    assert not is_collapsed("segmentation", some)
    assert finetune._prior_loss(np.array([0, 1, 1, 1]), np.array([0, 1])) == pytest.approx(
        -(math.log(0.75) + math.log(0.25)) / 2)


def test_constant_inputs_give_a_collapsed_trial():
    """Every cube identical: the model can only predict one probability, the prior at best."""
    row = run_trial(make_data("classification", constant=True), "classification", "scratch", None, 0, MODEL,
                    max_steps=4, **FAST)
    assert row["collapsed"] is True and row["auc"] == 0.5


def test_learnable_trial_is_not_collapsed():
    row = run_trial(make_data("classification"), "classification", "scratch", None, 0, MODEL,
                    max_steps=20, **{**FAST, "lr": 1e-2})
    assert row["collapsed"] is False


# ------------------------------------------------------------------------------------ segmentation

def test_segmentation_row():
    from semgen_ray.evaluate.metrics import mean_iou_per_batch

    data = make_data("segmentation")
    row = run_trial(data, "segmentation", "scratch", None, 0, MODEL, max_steps=4, **FAST)
    assert set(row) == set(ROW_KEYS) - {"auc"}
    assert row["test_pos"] == 4 and row["test_neg"] == 2  # cubes 1, 2, 4, 5 hold foreground
    for key in ("dice", "iou", "mean_iou"):
        assert 0 <= row[key] <= 1
    assert isinstance(row["collapsed"], bool) and row["val_loss"] <= 1
    assert mean_iou_per_batch(np.zeros((2, 1, 2, 2, 2)), np.zeros((2, 1, 2, 2, 2)), 2) == 1.0


def test_same_seed_same_row():
    def strip(row):
        return {k: v for k, v in row.items() if k != "seconds"}

    data = make_data("segmentation")
    kw = dict(max_steps=4, label_fraction=0.67, **FAST)
    a = run_trial(data, "segmentation", "scratch", None, 5, MODEL, **kw)
    b = run_trial(data, "segmentation", "scratch", None, 5, MODEL, **kw)
    c = run_trial(data, "segmentation", "scratch", None, 6, MODEL, **kw)
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert a["train_cases"] == 4  # 2 of the 3 training patients (2 cubes each)
    assert a["train_patients"] == 2 and a["subset_draws"] == 1


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_cpu_trials_train_channels_last_with_the_default_orders_outputs(task, monkeypatch):
    """On CPU a trial's convolutions run with channels-last weights (oneDNN's faster order,
    benchmarks/results/unet_layout.json); one training step gives the default order's loss and
    gradients to float rounding."""
    from semgen_ray.models import build_model

    seen = []
    real = finetune._forward

    def spy(model, task, x):
        if not seen and model.training:
            seen.append(model)
        return real(model, task, x)

    monkeypatch.setattr(finetune, "_forward", spy)
    run_trial(make_data(task), task, "scratch", None, 0, MODEL, **{**FAST, "max_steps": 1})
    convs = [m.weight for m in seen[0].modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous()
                         for w in convs if w.shape[1] > 1 and w.shape[2:].numel() > 1)  # else both orders

    data = make_data(task).splits["train"]
    x, y = torch.from_numpy(data["x"][:4]), torch.as_tensor(data["y"][:4])
    grads = []
    for to_layout in (lambda m: m, lambda m: finetune._on_device(m, "cpu")):
        torch.manual_seed(3)
        model = to_layout(build_model({k: v for k, v in MODEL.items() if k != "head"}, num_classes=2,
                                      head="linear" if task == "classification" else None)).train()
        loss = finetune._loss(task, finetune._forward(model, task, x), y.long() if task == "classification" else y)
        loss.backward()
        grads.append([float(loss.detach())] + [p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1:], grads[1][1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------ settings

def test_batch_size_and_cpus_per_trial_reach_the_trial(monkeypatch):
    """evaluate.batch_size is the number of training cubes per optimizer step of a Tune trial, and
    evaluate.cpus_per_trial its torch threads: the configuration through the stage's trial settings
    (run.fine_tune_settings) into the trial body (trials._trial → run_trial), as the stage runs it.
    6 training cubes: batches of 2 (3 steps a pass), or of 4 and the remaining 2 (2 steps a pass)."""
    from semgen_ray.config import load_config
    from semgen_ray.evaluate import trials
    from semgen_ray.stages.evaluation import fine_tune_settings

    real, seen, reported = finetune._forward, [], []

    def spy(model, task, x):
        if model.training:
            seen.append((int(x.shape[0]), torch.get_num_threads()))
        return real(model, task, x)

    monkeypatch.setattr(finetune, "_forward", spy)
    monkeypatch.setattr("ray.tune.report", reported.append)
    data = {"classification": make_data("classification")}
    steps = {}
    for batch_size, cpus_per_trial in ((2, 1), (4, 2)):
        config = load_config(None, [f"evaluate.batch_size={batch_size}", f"evaluate.cpus_per_trial={cpus_per_trial}",
                                    "evaluate.max_steps=4", "evaluate.eval_every=4", "model.width=4"])
        settings = {**fine_tune_settings(config), "weights": {"scratch": None}}
        seen.clear()
        trials._trial({"settings": settings, "cell": ("classification", 1.0, 0), "arm": "scratch"}, data)
        assert reported[-1]["steps"] == 4
        steps[batch_size] = list(seen)
    assert steps[2] == [(2, 1)] * 4
    assert steps[4] == [(4, 2), (2, 2)] * 2


def test_engine_and_precision_reach_the_trial(monkeypatch):
    """evaluate.engine and evaluate.precision, through the stage's trial settings into the trial body:
    plain torch in fp32 (the default, left out of the settings so earlier trials stay valid), torch
    with bf16 autocast over fp32 weights, DeepSpeed with bf16 weights (fp32 masters) in a one-rank
    process group (kept for the process, as DeepSpeed needs)."""
    import torch.distributed as dist

    from semgen_ray.config import load_config
    from semgen_ray.evaluate import trials
    from semgen_ray.stages.evaluation import fine_tune_settings

    real, seen, reported = finetune._forward, [], []

    def spy(model, task, x):
        if model.training:
            seen.append((x.dtype, next(model.parameters()).dtype, torch.is_autocast_enabled("cpu")))
        return real(model, task, x)

    monkeypatch.setattr(finetune, "_forward", spy)
    monkeypatch.setattr("ray.tune.report", reported.append)
    data = {"classification": make_data("classification")}
    f32, b16 = torch.float32, torch.bfloat16
    expected = {("torch", "fp32"): (f32, f32, False), ("torch", "bf16"): (f32, f32, True),
                ("deepspeed", "bf16"): (b16, b16, False)}
    for (engine, precision), first_step in expected.items():
        config = load_config(None, [f"evaluate.engine={engine}", f"evaluate.precision={precision}",
                                    "evaluate.max_steps=2", "evaluate.eval_every=2", "model.width=4"])
        settings = {**fine_tune_settings(config), "weights": {"scratch": None}}
        assert ("engine" in settings) is (engine != "torch") and ("precision" in settings) is (precision != "fp32")
        seen.clear()
        trials._trial({"settings": settings, "cell": ("classification", 1.0, 0), "arm": "scratch"}, data)
        assert reported[-1]["steps"] == 2 and math.isfinite(reported[-1]["val_loss"])
        assert seen[0] == first_step, (engine, precision)
    assert dist.is_initialized() and dist.get_world_size() == 1
