"""Pretraining objectives: which losses, on which inputs (Semantic Genesis paper §2, docs/method.md §5).

============================== ============================== =====================================
objective                      loss                           corruptions
============================== ============================== =====================================
``semantic_genesis``           λ_cls·CE(logits) + λ_rec·MSE    ``train.corruption`` (default ``sg``)
``restoration``                MSE (Models Genesis)            ``train.corruption``
``classification``             CE on uncorrupted cubes         none
``inpainting_classification``  λ_cls·CE + λ_rec·MSE            in-painting only (paper add-on)
``shuffling_classification``   λ_cls·CE + λ_rec·MSE            local shuffling only (paper add-on)
============================== ============================== =====================================

**Classification warm-up** (``train.cls_warmup_epochs`` = W; Semantic Genesis paper §2: "we first
train the classification branch for 20 epochs, then jointly train the entire model"): objectives
with both a classification and a restoration loss (``semantic_genesis`` and the two add-ons) train
the first W epochs as ``classification`` does (λ_cls·CE on uncorrupted cubes, encoder and head only:
the decoder is not run, so it gets no gradient and its BatchNorm statistics stay untouched), then
with their joint loss. ``restoration`` (no classification loss) and ``classification`` (nothing to
warm up) ignore W. See :func:`warmup_epochs` and :func:`phase_of`.

Cross-entropy is computed on logits (stable in bf16/fp16), not as the reference's NLL of log-softmax
(the same value in exact arithmetic; docs/design.md, "Decisions and why"); both losses are computed in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from semgen_ray.config.schema import OBJECTIVE_CORRUPTION, OBJECTIVES


@dataclass(frozen=True)
class Objective:
    """What one objective trains: the loss terms and the corruption overrides it imposes."""

    name: str
    classify: bool
    restore: bool
    corruption_overrides: tuple[tuple[str, object], ...] = ()

    @property
    def corrupts(self) -> bool:
        """Whether the network sees corrupted inputs (everything but classification-only)."""
        return self.restore


def objective(name: str) -> Objective:
    """The :class:`Objective` called ``name`` (one of :data:`semgen_ray.config.schema.OBJECTIVES`)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose from {list(OBJECTIVES)}")
    if name in OBJECTIVE_CORRUPTION:  # one corruption, always; the run's policy merges it in
        return Objective(name, True, True, tuple(OBJECTIVE_CORRUPTION[name].items()))
    return Objective(name, classify=name != "restoration", restore=name != "classification")


WARMUP, JOINT = "warmup", "joint"


def warmup_epochs(name: str, cls_warmup_epochs: int) -> int:
    """Epochs of classification-only warm-up that objective ``name`` runs: W when it has both a
    classification and a restoration loss, else 0 (nothing to warm up)."""
    obj = objective(name)
    return int(cls_warmup_epochs) if obj.classify and obj.restore else 0


def phase_of(epoch: int, warmup: int) -> str:
    """``"warmup"`` for epochs 1..``warmup`` (1-based), ``"joint"`` after."""
    return WARMUP if epoch <= warmup else JOINT


def warmup_objective(name: str) -> Objective:
    """The loss of the warm-up phase: objective ``name``'s classification term alone, no corruption."""
    return Objective(name, classify=True, restore=False)


def loss_terms(obj: Objective, restored, target, logits, labels, lambda_cls: float, lambda_rec: float):
    """``(loss, {"rec_loss", "cls_loss", "correct"})`` of one batch (tensors; parts detached).

    ``restored`` may be ``None`` when ``obj`` does not restore (its ``rec_loss`` is then 0).
    """
    import torch
    import torch.nn.functional as F

    zero = torch.zeros((), device=target.device)
    rec = F.mse_loss(restored.float(), target.float()) if obj.restore else zero
    if obj.classify:
        cls = F.cross_entropy(logits.float(), labels.long())
        correct = (logits.detach().argmax(1) == labels).sum()
    else:
        cls, correct = zero, zero
    loss = (lambda_rec * rec if obj.restore else 0.0) + (lambda_cls * cls if obj.classify else 0.0)
    return loss, {"rec_loss": rec.detach(), "cls_loss": cls.detach(), "correct": correct.detach()}
