"""The preview PNG is written."""

from __future__ import annotations

import pytest

from semgen_ray.phantoms.preview import save_preview


def test_save_preview(tmp_path):
    pytest.importorskip("matplotlib")
    path = save_preview(tmp_path / "p.png", indices=(0, 1), shape=(64, 64, 32), dpi=30)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
