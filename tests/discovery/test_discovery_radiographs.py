"""Self-discovery's first steps on 2D images (Semantic Genesis 2D, issue 18): the phantom radiographs
read whole and resized, a 2D auto-encoder trained on them with Ray Train, and their embeddings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

SIZE = (64, 64)


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> str:
    """Eight phantom radiographs (of 64×64×32 phantoms: 32 rows × 64 columns) in a store."""
    from semgen_ray.config.schema import IngestConfig, PhantomConfig, StoreConfig
    from semgen_ray.phantoms.cohort import write_cohort

    uri = str(tmp_path_factory.mktemp("films") / "xr.zarr")
    report = write_cohort(PhantomConfig(n=8, seed=0, shape=(64, 64, 32)), StoreConfig(uri=uri),
                          IngestConfig(split_fractions=(0.5, 0.5, 0.0)), progress=False, radiographs=True)
    assert report.ok
    return uri


def test_2d_images_are_read_whole_and_resized(films):
    import torch

    from semgen_ray.data.volumes import read_volumes
    from semgen_ray.store import open_store

    store = open_store(films)
    rows = sorted(read_volumes(films, SIZE).take_all(), key=lambda r: r["patient_id"])
    assert [r["patient_id"] for r in rows] == store.image_ids and len(rows) == 8
    image, meta = store.read(rows[3]["patient_id"], normalize=True)
    want = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=SIZE, mode="bilinear",
                                           align_corners=False)[0, 0].numpy()
    assert rows[3]["volume"].shape == SIZE and meta["kind"] == "2d"
    np.testing.assert_allclose(rows[3]["volume"][:, 1:-1], want[:, 1:-1], atol=1e-5)  # rows up-sampled 2x
    np.testing.assert_array_equal(rows[3]["original_shape"], image.shape)


def test_a_2d_autoencoder_trains_on_radiographs_and_embeds_them(films, tmp_path):
    from semgen_ray.discovery.autoencoder_training import train_autoencoder
    from semgen_ray.discovery.embedding import embed_patients
    from semgen_ray.store import open_store

    ids = open_store(films).image_ids
    result = train_autoencoder(films, ids[:6], ids[6:], {"width": 4, "spatial_dims": 2}, SIZE, batch_size=2,
                               lr=1e-3, max_epochs=2, patience=5, run_dir=tmp_path / "run", seed=0)
    assert result["epochs"] == 2 and all(math.isfinite(h["val_loss"]) for h in result["history"])
    card = json.loads((Path(result["model_dir"]) / "model_card.json").read_text())
    assert card["input"]["size"] == list(SIZE) and card["architecture"]["spatial_dims"] == 2
    assert card["intensity"]["kind"] == "2d"
    got_ids, emb = embed_patients(films, result["model_dir"])
    assert got_ids == ids and emb.shape == (8, 64) and np.isfinite(emb).all()
    assert np.unique(emb.round(5), axis=0).shape[0] == 8            # every film its own embedding
    again = embed_patients(films, result["model_dir"])[1]
    np.testing.assert_array_equal(again, emb)
    with pytest.raises(ValueError, match="spatial_dims=2"):
        train_autoencoder(films, ids[:6], ids[6:], {"width": 4}, SIZE, run_dir=tmp_path / "bad")
