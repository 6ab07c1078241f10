"""The stages of a run, on top of the libraries (docs/design.md, "Stages and artefacts").

Only this wing knows run folders (:class:`~semgen_ray.stages.layout.RunLayout`), the stages' reuse
records (:mod:`semgen_ray.reuse`) and which stage starts which Ray job; nothing below imports it
(``tests/test_imports.py``):

- :mod:`~semgen_ray.stages.discovery`: self-discovery → ``run_dir/discovery``;
- :mod:`~semgen_ray.stages.pretraining`: pretraining → ``run_dir/train`` (and ``train_<objective>``);
- :mod:`~semgen_ray.stages.evaluation`: the target-task evaluation → ``run_dir/evaluate``;
- :mod:`~semgen_ray.stages.pipeline`: the chain (data, stream, discover, train, evaluate) behind
  ``python -m semgen_ray.pretrain``.

Every stage's error is a :class:`StageError`, which the commands report in one line.
"""


class StageError(RuntimeError):
    """A stage cannot run as configured; the message says why."""


__all__ = ["StageError"]
