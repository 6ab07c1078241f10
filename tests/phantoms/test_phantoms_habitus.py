"""Habitus clusters: patients of one cluster look more alike than patients of different clusters."""

from __future__ import annotations

import numpy as np

from semgen_ray.phantoms.anatomy import sample_params
from semgen_ray.phantoms.habitus import HABITUS
from semgen_ray.phantoms.render import render

PER_CLUSTER = 3
SHAPE = (64, 64, 32)


def _pick(per_cluster):
    picked = {k: [] for k in range(len(HABITUS))}
    for i in range(200):
        p = sample_params(0, i)
        if len(picked[p.habitus]) < per_cluster:
            picked[p.habitus].append(p)
        if all(len(v) == per_cluster for v in picked.values()):
            return picked
    raise AssertionError("not every cluster occurs in the first 200 patients")


def test_every_cluster_occurs_and_is_recorded():
    seen = {sample_params(0, i).habitus for i in range(40)}
    assert seen == set(range(len(HABITUS)))
    p = sample_params(0, 0)
    assert p.habitus_name == HABITUS[p.habitus].name


def test_same_cluster_patients_are_closer():
    picked = _pick(PER_CLUSTER)
    feats, labels = [], []
    for k, params in picked.items():
        for p in params:
            hu, _ = render(p, SHAPE)
            small = np.clip(hu.astype(np.float32), -1000, 1000).reshape(16, 4, 16, 4, 8, 4).mean((1, 3, 5))
            feats.append(small.ravel())
            labels.append(k)
    f, lab = np.array(feats), np.array(labels)
    d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    same = (lab[:, None] == lab[None]) & ~np.eye(len(lab), dtype=bool)
    diff = lab[:, None] != lab[None]
    assert d[same].mean() < 0.8 * d[diff].mean()
    nearest = np.argmin(d + np.eye(len(lab)) * 1e12, axis=1)
    assert np.mean(lab[nearest] == lab) >= 0.75
