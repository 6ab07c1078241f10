"""Run-folder paths of the pipeline: relative artefact paths stay inside the run folder."""

import pytest

from semgen_ray.pipeline import StageError, resolve


def test_relative_paths_resolve_inside_the_run_folder():
    assert resolve("runs/a", "store.zarr") == "runs/a/store.zarr"
    assert resolve("s3://bucket/run/", "discovery/patterns.parquet") == "s3://bucket/run/discovery/patterns.parquet"
    assert resolve("runs/a", "/data/store.zarr") == "/data/store.zarr"  # explicit: absolute path
    assert resolve("runs/a", "s3://b/store.zarr") == "s3://b/store.zarr"  # explicit: URI


@pytest.mark.parametrize("escaping", ["../store.zarr", "a/../../x", "..", "a\\..\\..\\x"])
def test_relative_paths_that_climb_out_are_refused(escaping):
    with pytest.raises(StageError, match="leaves the run folder"):
        resolve("runs/a", escaping)
