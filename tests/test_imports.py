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
                                    "semgen_ray.ingest", "semgen_ray.cli", "semgen_ray.logs"])
def test_light_imports_do_not_load_ray_or_torch(module):
    code = (f"import sys, {module}\n"
            "heavy = [m for m in ('torch', 'ray', 'deepspeed', 'SimpleITK', 'pydicom') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _inside(package: str, owner: str) -> bool:
    return package == owner or package.startswith(owner + ".")


def _private_imports(root) -> list[str]:
    """``module: from X import _y`` for every import under the package folder ``root`` that reaches
    into another module's or package's privates. A ``_name`` defined in a module is private to that
    module; a ``_module`` (and what it defines) to its package and the packages below it."""
    import ast
    from pathlib import Path

    root = Path(root)
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = ".".join(parts[:-1])  # the importer's package (an __init__ is in its own package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(root.name):
                continue
            source = node.module.split(".")
            hidden = [i for i, p in enumerate(source) if p.startswith("_") and not p.startswith("__")]
            if hidden and not _inside(package, ".".join(source[:hidden[0]])):
                found.append(f"{'.'.join(parts)}: from {node.module} import ...")
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    target = root.parent.joinpath(*source, alias.name)
                    is_module = target.with_suffix(".py").is_file() or target.is_dir()
                    if not (is_module and _inside(package, node.module)):
                        found.append(f"{'.'.join(parts)}: from {node.module} import {alias.name}")
    return found


def test_no_module_imports_a_private_name_of_another(tmp_path):
    """Shared helpers are public (``semgen_ray.figures``, ``discovery.index.check_k``); a private
    module is used only inside its own package. The scan itself is checked on a small package."""
    from pathlib import Path

    assert _private_imports(Path(semgen_ray.__file__).parent) == []
    pkg = tmp_path / "pkg"
    for name, text in {"__init__.py": "", "a/__init__.py": "", "a/_impl.py": "X = 1\n",
                       "a/m.py": "_x = 1\nfrom pkg.a import _impl\nfrom pkg.a._impl import X\n",
                       "b/__init__.py": "", "b/n.py": "from pkg.a.m import _x\nfrom pkg.a import _impl\n"
                                                       "from pkg.a._impl import X\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert _private_imports(pkg) == ["pkg.b.n: from pkg.a.m import _x", "pkg.b.n: from pkg.a import _impl",
                                     "pkg.b.n: from pkg.a._impl import ..."]
