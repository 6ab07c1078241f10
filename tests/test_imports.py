"""Architecture guards: every module imports on its own, and light entry points stay light."""

import pkgutil
import subprocess
import sys

import pytest

import semgen_ray


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(semgen_ray.__path__, "semgen_ray."))


def test_every_module_imports_in_a_clean_process():
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    modules = [m for m in _modules() if not m.endswith("__main__")]
    assert len(modules) > 20
    subprocess.run([sys.executable, "-c", code, *modules], check=True, timeout=300)


@pytest.mark.parametrize("module", ["semgen_ray", "semgen_ray.config", "semgen_ray.io", "semgen_ray.store",
                                    "semgen_ray.data", "semgen_ray.transforms", "semgen_ray.phantoms",
                                    "semgen_ray.ingest"])
def test_light_imports_do_not_load_ray_or_torch(module):
    code = (f"import sys, {module}\n"
            "heavy = [m for m in ('torch', 'ray', 'deepspeed', 'SimpleITK', 'pydicom') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
