"""Shared phantom renderings, made once per session (rendering dominates the test time)."""

from __future__ import annotations

import pytest

from semgen_ray.phantoms.anatomy import sample_params
from semgen_ray.phantoms.render import render_detailed

SMALL = (128, 128, 64)
COHORT = 8


@pytest.fixture(scope="session")
def cohort():
    """Patients 0..7 of cohort 0 at 128×128×64: list of (params, Rendering)."""
    out = []
    for i in range(COHORT):
        params = sample_params(0, i)
        out.append((params, render_detailed(params, SMALL)))
    return out


@pytest.fixture(scope="session")
def default_patient():
    """Patient 1 of cohort 0 (obese, 3 nodules) at the default 256×256×128 grid: (params, Rendering)."""
    params = sample_params(0, 1)
    return params, render_detailed(params)
