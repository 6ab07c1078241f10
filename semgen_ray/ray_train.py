"""Running a worker function on Ray Train the same way for both training stages.

The self-discovery auto-encoder and pretraining each run a ``TorchTrainer``: gloo on CPU and NCCL on
GPUs, deterministic ingest (blocks leave Ray Data, and are split between ranks, in a seeded order;
``preserve_order`` also turns off the locality-based split, which depends on timing), and the
epoch lines relayed from Ray Train's controller to the driver's log (:class:`semgen_ray.logs.ReportRelay`);
and at the end both pick their best checkpoint by the same rule (:func:`best_checkpoint`).
"""

from __future__ import annotations


def fit(loop, loop_config: dict, datasets: dict, *, relay, name: str, storage: str, num_workers: int, gpu: bool,
        resources: dict, placement: str = "PACK", failure_config=None, checkpoint_config=None):
    """Run ``loop`` on ``num_workers`` Ray Train workers holding ``resources`` each; Ray Train's result."""
    import copy

    import ray.data
    from ray.train import DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ingest = copy.deepcopy(ray.data.DataContext.get_current().execution_options)
    ingest.preserve_order = True
    trainer = TorchTrainer(
        loop, train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpu, resources_per_worker=resources,
                                     placement_strategy=placement),
        run_config=RunConfig(name=name, storage_path=storage, callbacks=relay.callbacks,
                             failure_config=failure_config, checkpoint_config=checkpoint_config),
        datasets=datasets,
        dataset_config=DataConfig(execution_options=ingest),
    )
    with relay:  # the epoch lines, from Ray Train's controller to this log
        return trainer.fit()


def best_checkpoint(result, eligible=lambda metrics: True):
    """Of Ray Train's kept checkpoints, the one with the lowest reported ``val_loss`` among those whose
    metrics are ``eligible`` (the first kept on a tie); the latest checkpoint when none is."""
    best = None
    for ckpt, metrics in result.best_checkpoints or []:
        if (metrics and metrics.get("val_loss") is not None and eligible(metrics)
                and (best is None or metrics["val_loss"] < best[1]["val_loss"])):
            best = (ckpt, metrics)
    return best[0] if best is not None else result.checkpoint
