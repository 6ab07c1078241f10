"""semgen_ray.models tests run torch on one thread: the tensors are tiny, and on a 2-core box shared
with other work, two OpenMP threads spin-wait and make each step 10-50× slower."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
