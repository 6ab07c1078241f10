"""The README's quick-tour Python example runs as pasted, after the tour's own phantom command.

Both run as the README shows them, in fresh interpreters (the example starts its own Ray through
Ray Data), with one change: the store goes to this test's folder instead of ``/tmp/phantoms.zarr``.
The example runs in an empty folder, so its guarded ``Genesis_Chest_CT.pt`` line is skipped as it
is for a user who has not downloaded the file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
STORE = "/tmp/phantoms.zarr"

#: appended to the example: what it computed, checked in its own interpreter
CHECKS = """
assert hu.dtype == np.int16 and cube.shape == (64, 64, 32) and 0 <= cube.min() < cube.max() <= 1
assert cubes.shape == (8, 1, 64, 64, 32) and len(set(batch["patient_id"])) == 8
assert x.shape == y.shape == cubes.shape and np.abs(x - y).mean() > 0.01      # corrupted, not copied
assert len(set(params.names())) > 1                                            # per-sample draws differ
assert tuple(recon.shape) == (2, 1, 64, 64, 32) and tuple(logits.shape) == (2, 44)
print("QUICK TOUR OK")
"""


def quick_tour() -> tuple[list[str], str]:
    """The quick tour's shell lines (comments dropped) and its Python example."""
    text = README.read_text()
    tour = text[text.index("## Quick tour\n"):]
    tour = tour[:tour.index("\n## ", 1)]
    shell = [line for block in re.findall(r"```bash\n(.*?)```", tour, re.S) for line in block.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    (python,) = re.findall(r"```python\n(.*?)```", tour, re.S)
    return shell, python


@pytest.mark.slow
@pytest.mark.ray
def test_quick_tour_python_example_runs_as_pasted(tmp_path):
    shell, python = quick_tour()
    (phantoms,) = [line for line in shell if "-m semgen_ray.phantoms " in line]
    argv = phantoms.split()
    assert argv[:2] == ["./venv-run", "python"] and STORE in argv, phantoms
    store = str(tmp_path / "phantoms.zarr")
    made = subprocess.run([sys.executable, *[store if a == STORE else a for a in argv[2:]]],
                          capture_output=True, text=True, timeout=300, cwd=README.parent)
    assert made.returncode == 0, made.stderr[-3000:]
    assert STORE in python
    script = tmp_path / "work" / "tour.py"
    script.parent.mkdir()
    script.write_text(python.replace(STORE, store) + CHECKS)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=script.parent)
    assert done.returncode == 0 and "QUICK TOUR OK" in done.stdout, done.stderr[-3000:]


def test_readme_preset_rows_state_the_presets_numbers():
    """The README's preset table says what the presets hold: auto-encoder and pretraining epochs, C, K."""
    from semgen_ray.config import load_config

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w-]+)`(?: \(default\))? \| (.*)$",
                                                        README.read_text(), re.M)}
    tiny, small = load_config("cpu-tiny", []), load_config("cpu-small", [])
    want_tiny = (f"C = {tiny.discovery.num_classes}, K = {tiny.discovery.k_train}, width {tiny.model.width}, "
                 f"{tiny.discovery.ae_epochs} auto-encoder and {tiny.train.max_epochs} pretraining epochs")
    assert want_tiny in rows["cpu-tiny"]
    want_small = (f"C = {small.discovery.num_classes}, K = {small.discovery.k_train}, "
                  f"{small.discovery.ae_epochs} auto-encoder epochs, {small.train.max_steps} pretraining steps")
    assert want_small in rows["cpu-small"]
