"""The recorded parameters of one corruption call: everything needed to replay it.

A :class:`CorruptionParams` holds the policy, the cube shape, every sample's seed row, which
operations were applied to which sample, and each operation's drawn parameters (numpy arrays with a
leading sample axis; samples an operation skipped carry its neutral ``empty`` values). It is plain
data: pickle it, log it, ``select`` samples, ``concat`` batches, or replay it with
``Corruption.apply``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from semgen_ray.transforms.policy import CorruptionPolicy

#: Operations in the order they are applied.
ORDER = ("flip", "elastic_deformation", "local_pixel_shuffle", "nonlinear_intensity", "in_painting",
         "out_painting")


@dataclass(frozen=True)
class CorruptionParams:
    """Drawn parameters of a batch (see the module docstring).

    Args:
        policy: the policy they were drawn with (it also configures replay).
        shape: the cube ``(X, Y, Z)``.
        entropy: (N, k) uint64 seed rows; sample ``i`` was drawn from ``SeedSequence(list(entropy[i]))``.
        applied: operation name → (N,) bool.
        ops: operation name → {parameter name → (N, ...) array}.
    """

    policy: CorruptionPolicy
    shape: tuple[int, int, int]
    entropy: np.ndarray
    applied: dict[str, np.ndarray] = field(default_factory=dict)
    ops: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.entropy.shape[0])

    def select(self, index) -> CorruptionParams:
        """The parameters of some samples (an index array, a slice or a boolean mask)."""
        index = np.arange(len(self))[index]
        return CorruptionParams(
            self.policy, self.shape, self.entropy[index],
            {k: v[index] for k, v in self.applied.items()},
            {k: {p: v[index] for p, v in d.items()} for k, d in self.ops.items()})

    @staticmethod
    def concat(parts: list[CorruptionParams]) -> CorruptionParams:
        """One batch's parameters from several (same policy and shape)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.policy != first.policy or p.shape != first.shape or p.entropy.shape[1] != first.entropy.shape[1]:
                raise ValueError("can only concatenate parameters of the same policy, cube shape and seed form")
        return CorruptionParams(
            first.policy, first.shape, np.concatenate([p.entropy for p in parts]),
            {k: np.concatenate([p.applied[k] for p in parts]) for k in first.applied},
            {k: {n: np.concatenate([p.ops[k][n] for p in parts]) for n in d} for k, d in first.ops.items()})

    def names(self) -> list[str]:
        """Per sample, the applied operations joined by ``+`` (``"identity"`` when none)."""
        out = []
        for i in range(len(self)):
            done = [k for k in ORDER if k in self.applied and bool(self.applied[k][i])]
            out.append("+".join(done) if done else "identity")
        return out
