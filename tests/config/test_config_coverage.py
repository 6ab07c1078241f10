"""Ledger: every configuration key has a test through a public entry point that changes it and checks
that the outcome changes (issue 15: "every option does what it says").

Every leaf key of :class:`~semgen_ray.config.SemGenConfig` (the dataclasses of
``semgen_ray/config/schema.py``, walked recursively) is in exactly one of:

- ``COVERED``: test node ids ``path::function`` that change the key through a public entry point and
  assert that the outcome changes: the command lines, ``ingest``, the ``run_*`` functions
  (``run_pretraining``, ``run_trials`` / ``run_trial``), or the public function a stage hands the
  setting to unchanged (``build_model`` / ``UNet3D`` for ``model.*``, ``build_tasks`` for the
  evaluation cubes, ``init_ray`` for ``ray.*``);
- ``EXEMPT``: keys that cannot be exercised on this test machine, with the reason;
- ``GAPS``: keys without such a test yet, with what exists instead; empty, and
  ``test_no_gaps_remain`` keeps it so: a new setting needs its test (or an exemption) to land.

The checks are static (no test is run here): the named file exists, holds the named test function,
and that function's source (decorators included) names the key: its dotted path, its leaf name
as a word, or its command-line option (``--run-dir``).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from functools import cache
from pathlib import Path

import pytest

from semgen_ray.config import SemGenConfig

TESTS = Path(__file__).resolve().parents[1]

D = "tests/stages/test_stages_discovery.py::"
I = "tests/ingest/test_ingest.py::"
E = "tests/evaluate/"
T = "tests/stages/test_stages_pretraining.py::"
P = "tests/test_pretrain.py::"
FT = E + "test_evaluate_finetune.py::"
CLI = E + "test_evaluate_cli.py::test_evaluate_cli_reports_progress_relative_paths_and_follows_its_options"
GRID = E + "test_evaluate_trials.py::test_two_arm_two_trial_grid_reports_and_resumes"
GATES = E + "test_evaluate_report.py::test_gate_settings_and_alpha_change_the_verdicts"
SETTINGS = I + "test_store_and_ingest_settings_change_what_is_written"
MR_FIXED = "tests/ingest/test_ingest_mr_intensity.py::test_fixed_window_by_config_rewrites_and_warns_on_zscored"
GPU_WAIT = "tests/test_gpus.py::test_pretrain_with_gpus_required_fails_clearly_instead_of_training_on_cpus"
TASKS = E + "test_evaluate_tasks.py::"
TARGET = E + "test_evaluate_target.py::test_target_cohort_follows_target_patients_target_seed_and_target_shape"
TS = "tests/train/test_train_settings.py::"
FED = TS + "test_corruption_target_corrupt_on_and_fixed_val_corruption_change_what_the_model_is_fed"
AE = D + "test_autoencoder_settings_and_read_cpus_change_the_run"
RUNTIME = "tests/test_runtime.py::test_a_running_session_is_reused_with_a_warning_naming_what_differs"

COVERED: dict[str, tuple[str, ...]] = {
    "run_dir": (P + "test_a_store_named_with_store_is_read_never_written",),
    "seed": (D + "test_discover_is_deterministic_and_reuses_finished_work",),
    # store
    "store.uri": (P + "test_a_store_named_with_store_is_read_never_written",),
    "store.chunks": (SETTINGS,),
    "store.clevel": (SETTINGS,),
    # ingest
    "ingest.modality": (SETTINGS,),
    "ingest.target_spacing": (I + "test_resampling_to_a_target_spacing",),
    "ingest.id_from": (I + "test_one_dicom_patient_id_from_two_folders_is_not_overwritten",),
    "ingest.split_fractions": (SETTINGS,),
    "ingest.max_voxels": (I + "test_bad_inputs_fail_alone_with_reasons",),
    "ingest.min_extent": (SETTINGS,),
    "ingest.max_spacing_mm": (SETTINGS,),
    "ingest.allow_failures": (SETTINGS,),
    "ingest.mr_intensity": (MR_FIXED,),
    "ingest.mr_window": (MR_FIXED,),
    "ingest.uneven_spacing": (I + "test_uneven_spacing_keeps_resamples_or_refuses_a_series_with_a_missing_slice",),
    "ingest.kind": ("tests/ingest/test_ingest_radiographs.py::"
                    "test_ingest_2d_stores_every_radiograph_as_read_and_skips_them_on_rerun",),
    # phantoms (the pipeline's own cohort)
    "phantoms.n": (P + "test_pretrain_runs_available_stages_and_reruns_idempotently",),
    "phantoms.shape": (P + "test_pretrain_runs_available_stages_and_reruns_idempotently",),
    "phantoms.seed": (P + "test_phantoms_seed_makes_another_cohort",),
    # data
    "data.cube_size": (P + "test_pretrain_streams_an_ingested_store",),
    "data.volume_shape": (P + "test_pretrain_streams_an_ingested_store",),
    "data.read_cpus": (AE,),
    # discovery
    "discovery.num_classes": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.k_train": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.k_val": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.resolutions": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.min_patch": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.max_patch": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.max_offset": (D + "test_class_and_crop_settings_change_the_manifest",),
    "discovery.border_xy": (D + "test_coordinate_settings_change_where_classes_sit",),
    "discovery.border_z": (D + "test_coordinate_settings_change_where_classes_sit",),
    "discovery.lung_threshold_hu": (D + "test_coordinate_settings_change_where_classes_sit",),
    "discovery.lung_max": (D + "test_coordinate_settings_change_where_classes_sit",),
    "discovery.max_tries": (D + "test_coordinate_settings_change_where_classes_sit",),
    "discovery.min_distance": (D + "test_min_distance_and_body_box_change_the_discovery",),
    "discovery.coordinates": (D + "test_min_distance_and_body_box_change_the_discovery",),
    "discovery.autoencoder": (
        "tests/models/test_models_autoencoder.py::test_build_autoencoder_follows_discovery_config",
    ),
    "discovery.index": (D + "test_discover_with_a_pca_hnsw_index_records_it",),
    "discovery.hnsw_m": (D + "test_hnsw_settings_reach_the_saved_graph",),
    "discovery.hnsw_ef_construction": (D + "test_hnsw_settings_reach_the_saved_graph",),
    "discovery.hnsw_ef": (D + "test_hnsw_settings_reach_the_saved_graph",),
    "discovery.hnsw_pca_dim": (D + "test_discover_with_a_pca_hnsw_index_records_it",),
    "discovery.use_gpu": (GPU_WAIT,),
    "discovery.ae_epochs": (AE,),
    "discovery.ae_batch_size": (AE,),
    "discovery.ae_lr": (AE,),
    "discovery.ae_patience": (AE,),
    "discovery.ae_workers": (AE,),
    "discovery.ae_engine": (D + "test_the_autoencoder_trains_with_deepspeed_through_the_command",),
    "discovery.ae_precision": (D + "test_the_autoencoder_trains_with_deepspeed_through_the_command",),
    "discovery.ae_zero_stage": (D + "test_the_autoencoder_trains_with_deepspeed_through_the_command",),
    # train
    "train.objective": (T + "test_objectives_run",),
    "train.cls_warmup_epochs": (T + "test_warmup_leaves_the_decoder_untouched_and_resumes_mid_warmup",),
    "train.max_epochs": (T + "test_warmup_leaves_the_decoder_untouched_and_resumes_mid_warmup",),
    "train.max_steps": (T + "test_objectives_run",),
    "train.checkpoint_every": (
        "tests/engine/test_engine_checkpoint.py::test_training_resumes_from_the_newest_good_checkpoint",
    ),
    "train.max_failures": (
        "tests/train/test_train_reproducible.py::"
        "test_a_killed_and_resumed_run_sees_the_same_data_as_an_uninterrupted_one",
    ),
    "train.placement": ("tests/train/test_train_multinode.py::test_a_killed_node_costs_only_time",),
    "train.corruption_overrides": (P + "test_pretrain_runs_available_stages_and_reruns_idempotently",),
    "train.storage_path": ("tests/stages/test_stages_pipeline.py::test_configuration_errors_leave_no_files_behind",),
    "train.batch_size": (TS + "test_batch_size_and_grad_accum_set_the_cubes_per_optimizer_step",),
    "train.grad_accum": (TS + "test_batch_size_and_grad_accum_set_the_cubes_per_optimizer_step",),
    "train.lr": (TS + "test_lr_schedule_step_epochs_and_gamma_set_each_epochs_learning_rate",),
    "train.schedule": (TS + "test_lr_schedule_step_epochs_and_gamma_set_each_epochs_learning_rate",),
    "train.step_epochs": (TS + "test_lr_schedule_step_epochs_and_gamma_set_each_epochs_learning_rate",),
    "train.gamma": (TS + "test_lr_schedule_step_epochs_and_gamma_set_each_epochs_learning_rate",),
    "train.lambda_cls": (TS + "test_lambda_cls_and_lambda_rec_weight_the_loss",),
    "train.lambda_rec": (TS + "test_lambda_cls_and_lambda_rec_weight_the_loss",),
    "train.patience": (TS + "test_patience_stops_after_that_many_epochs_without_improvement",),
    "train.num_workers": (TS + "test_num_workers_and_cpus_per_worker_set_the_ray_train_workers",),
    "train.cpus_per_worker": (TS + "test_num_workers_and_cpus_per_worker_set_the_ray_train_workers",),
    "train.precision": (TS + "test_precision_zero_stage_and_optimizer_shape_the_checkpoint",),
    "train.zero_stage": (TS + "test_precision_zero_stage_and_optimizer_shape_the_checkpoint",),
    "train.optimizer": (TS + "test_precision_zero_stage_and_optimizer_shape_the_checkpoint",),
    "train.corruption": (FED,),
    "train.target": (FED,),
    "train.corrupt_on": (FED,),
    "train.fixed_val_corruption": (FED,),
    "train.keep_checkpoints": (TS + "test_keep_checkpoints_sets_how_many_checkpoints_remain",),
    "train.shuffle_buffer": (TS + "test_shuffle_buffer_zero_feeds_each_patients_crops_together",),
    # evaluate
    "evaluate.negatives": (CLI,),
    # evaluate: the command line, or the functions the stage hands each setting to (build_tasks,
    # run_trials / run_trial)
    "evaluate.trials": (GRID,),
    "evaluate.arms": (CLI,),
    "evaluate.weights": (GRID,
                         FT + "test_trials_start_from_the_exported_encoder_with_a_fresh_head"),
    "evaluate.label_fraction": (GRID,),
    "evaluate.curve_trials": (GRID,),
    "evaluate.per_task": (GRID,),
    "evaluate.lr": (FT + "test_no_improvement_possible_stops_after_patience_validations",),
    "evaluate.max_steps": (FT + "test_step_budget_and_validation_schedule",),
    "evaluate.eval_every": (FT + "test_step_budget_and_validation_schedule",),
    "evaluate.patience": (FT + "test_plateau_halves_lr_then_stops_early_and_tests_the_best_state",),
    "evaluate.lr_patience": (FT + "test_plateau_halves_lr_then_stops_early_and_tests_the_best_state",),
    "evaluate.head": (FT + "test_linear_head_is_one_linear_layer_on_the_pooled_bottleneck",),
    "evaluate.engine": (FT + "test_engine_and_precision_reach_the_trial",),
    "evaluate.precision": (FT + "test_engine_and_precision_reach_the_trial",),
    "evaluate.cube_mm": (TASKS + "test_cube_mm_scales_the_nodule",),
    "evaluate.seg_jitter": (TASKS + "test_jitter_moves_objects_off_centre_but_keeps_them",),
    "evaluate.seg_background": (TASKS + "test_background_cubes_and_segmentation_counts",),
    "evaluate.alpha": (GATES,),
    "evaluate.max_shortcut_auc": (GATES,),
    "evaluate.gate_auc": (GATES,),
    "evaluate.gate_dice": (GATES,),
    "evaluate.tasks": (CLI,),
    "evaluate.curve_fractions": (CLI,),
    "evaluate.batch_size": (FT + "test_batch_size_and_cpus_per_trial_reach_the_trial",),
    "evaluate.cpus_per_trial": (GRID, FT + "test_batch_size_and_cpus_per_trial_reach_the_trial",),
    "evaluate.target_store": (TASKS + "test_a_named_target_store_is_used_instead_of_a_phantom_cohort",),
    "evaluate.target_patients": (TARGET, CLI,),
    "evaluate.target_seed": (TARGET,),
    "evaluate.target_shape": (TARGET,),
    "evaluate.negatives_per_positive": (TASKS + "test_negatives_per_positive_sets_the_negatives_per_nodule",),
    "evaluate.min_voxels": (TASKS + "test_min_voxels_decides_which_nodules_qualify",),
    # model: build_model / UNet3D, which every stage builds its network with
    "model.width": ("tests/models/test_models_factory.py::test_presets",),
    "model.in_channels": ("tests/models/test_models_factory.py::test_in_channels_and_embed_dim_change_the_network",),
    "model.embed_dim": ("tests/models/test_models_factory.py::test_in_channels_and_embed_dim_change_the_network",),
    "model.norm": ("tests/models/test_models_factory.py::test_configs_dicts_and_overrides",),
    "model.head": ("tests/models/test_models_factory.py::test_configs_dicts_and_overrides",),
    "model.num_classes": ("tests/models/test_models_factory.py::test_configs_dicts_and_overrides",),
    "model.depth": ("tests/models/test_models_unet3d.py::test_depth_changes_names_and_input_multiple",),
    "model.out_channels": ("tests/models/test_models_unet3d.py::test_out_activation_none_gives_logits",),
    "model.out_activation": ("tests/models/test_models_unet3d.py::test_out_activation_none_gives_logits",),
    # ray
    "ray.address": (RUNTIME,),
    "ray.num_cpus": (RUNTIME,),
    "ray.object_store_mb": (RUNTIME,),
    "ray.dashboard": ("tests/test_runtime.py::test_local_mode_listens_on_loopback_only",),
    "ray.gpu_wait_s": (GPU_WAIT,),
    "ray.dashboard_port": ("tests/test_runtime.py::test_local_mode_listens_on_loopback_only",),
}

EXEMPT: dict[str, str] = {
    "train.use_gpu": "GPU training needs a GPU: on the CPU-only test machine auto and false both train on CPUs; "
                     "the refusal of true is decide_gpus's, tested through discovery.use_gpu (tests/test_gpus.py)",
    "evaluate.use_gpu": "GPU fine-tuning needs a GPU: on the CPU-only test machine auto and false both run on "
                        "CPUs; the refusal of true is decide_gpus's, tested through discovery.use_gpu",
    "evaluate.gpus_per_trial": "read only when the trials run on GPUs, which the CPU-only test machine has none of",
}

GAPS: dict[str, str] = {}


def config_keys(section=None, prefix: str = "") -> list[str]:
    """Dotted names of every leaf setting of the configuration (sections are walked, not listed)."""
    section = SemGenConfig() if section is None else section
    keys = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


@cache
def _functions(path: str) -> dict[str, str]:
    """Test function name → its source with its decorators (parametrized values are part of the test),
    for one test file (module level and inside classes)."""
    text = (TESTS.parent / path).read_text()
    lines = text.splitlines()
    out = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out[node.name] = "\n".join(lines[first - 1:node.end_lineno])
    return out


def test_every_key_is_listed_exactly_once():
    keys = config_keys()
    assert len(keys) == len(set(keys)) > 100
    listed = [*COVERED, *EXEMPT, *GAPS]
    missing = sorted(set(keys) - set(listed))
    assert not missing, f"config keys without a ledger entry (add a test, an exemption or a gap): {missing}"
    unknown = sorted(set(listed) - set(keys))
    assert not unknown, f"ledger entries for keys the schema does not have: {unknown}"
    twice = sorted(k for k in set(listed) if listed.count(k) > 1)
    assert not twice, f"keys listed in more than one of COVERED, EXEMPT, GAPS: {twice}"


@pytest.mark.parametrize("key", sorted(COVERED))
def test_covering_tests_exist_and_name_the_key(key):
    nodes = COVERED[key]
    assert nodes, f"{key}: no test named"
    name_ = key.rsplit(".", 1)[-1]
    leaf = re.compile(rf"\b{re.escape(name_)}\b")
    flag = "--" + name_.replace("_", "-")  # a command-line test names it by its option (--run-dir)
    for node in nodes:
        path, _, name = node.partition("::")
        assert (TESTS.parent / path).is_file(), f"{key}: {path} does not exist"
        source = _functions(path).get(name)
        assert source is not None, f"{key}: {path} has no test function {name}"
        assert key in source or leaf.search(source) or flag in source, f"{key}: {node} does not mention it"


@pytest.mark.parametrize("table", ["EXEMPT", "GAPS"])
def test_exemptions_and_gaps_give_reasons(table):
    short = {k: r for k, r in globals()[table].items() if not isinstance(r, str) or len(r.split()) < 4}
    assert not short, f"{table} entries need a reason of a few words: {short}"


def test_no_gaps_remain():
    assert not GAPS, sorted(GAPS)
