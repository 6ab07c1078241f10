"""Patient embeddings with Ray Data batch inference (docs/method.md §1.3) and their Parquet file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

SHAPE = (32, 32, 16)
IDS = [f"phantom_{i:05d}" for i in range(6)]


def export_model(out_dir, uri, poison: bool = False):
    from semgen_ray.models import build_autoencoder, export_weights

    torch.manual_seed(0)
    model = build_autoencoder(None, width=4)
    if poison:
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
    return export_weights(model, out_dir, {"input_size": list(SHAPE), "lineage": {"store_uri": uri}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_store):
    root = tmp_path_factory.mktemp("emb")
    uri = tiny_store
    return uri, export_model(root / "ae", uri), root


def test_embeddings_match_direct_model_and_are_deterministic(setup):
    from semgen_ray.data.volumes import read_volumes
    from semgen_ray.discovery.embedding import embed_patients
    from semgen_ray.models import load_pretrained

    uri, model_dir, _ = setup
    ids, emb = embed_patients(uri, model_dir, SHAPE, batch_size=4, concurrency=1)
    assert ids == IDS
    assert emb.dtype == np.float32 and emb.shape == (6, 64)
    assert np.isfinite(emb).all() and np.ptp(emb, axis=0).max() > 0  # patients differ

    ids2, emb2 = embed_patients(uri, model_dir, patient_ids=IDS[::-1][:3], batch_size=2, concurrency=2)
    assert ids2 == sorted(IDS[::-1][:3])
    np.testing.assert_allclose(emb2, emb[[IDS.index(p) for p in ids2]], rtol=1e-5, atol=1e-6)

    rows = sorted(read_volumes(uri, SHAPE, columns=("volume", "patient_id")).take_all(),
                  key=lambda r: r["patient_id"])
    model = load_pretrained(model_dir).eval()
    with torch.no_grad():
        direct = model.embed(torch.from_numpy(np.stack([r["volume"] for r in rows]))[:, None]).numpy()
    np.testing.assert_allclose(emb, direct, rtol=1e-5, atol=1e-6)


def test_shape_mismatch_and_nan_embeddings_are_refused(setup):
    from semgen_ray.discovery.embedding import EmbeddingError, embed_patients

    uri, _, root = setup
    bad = export_model(root / "nan", uri, poison=True)
    with pytest.raises(ValueError, match="input size"):
        embed_patients(uri, bad, (64, 64, 32))
    with pytest.raises(EmbeddingError, match="phantom_00000.*phantom_00001"):
        embed_patients(uri, bad, patient_ids=IDS[:2])


def test_save_load_roundtrip(tmp_path):
    from semgen_ray.discovery.embedding import (
        EmbeddingError,
        load_embeddings,
        save_embeddings,
    )

    emb = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    path = save_embeddings(tmp_path / "e.parquet", ["b", "a", "c"], emb, {"model_dir": "x", "shape": [1, 2, 3]})
    ids, back, meta = load_embeddings(path)
    assert ids == ["a", "b", "c"] and back.dtype == np.float32
    np.testing.assert_array_equal(back, emb[[1, 0, 2]])
    assert meta == {"model_dir": "x", "shape": [1, 2, 3]}
    import pyarrow.parquet as pq

    assert str(pq.read_schema(path).field("embedding").type) == "fixed_size_list<element: float>[5]"
    emb[2, 1] = np.nan
    with pytest.raises(EmbeddingError, match="c"):
        save_embeddings(tmp_path / "f.parquet", ["a", "b", "c"], emb)
    with pytest.raises(EmbeddingError, match="duplicate"):
        save_embeddings(tmp_path / "f.parquet", ["a", "a", "c"], emb[:, :1] * 0)
