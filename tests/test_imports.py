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


#: The packages and top-level modules of ``semgen_ray``, lowest first (layers group them; the order
#: inside a layer counts too). A unit may import only from units listed before it (or from itself);
#: every import counts, a function's lazy one included,
#: except those under ``if TYPE_CHECKING:``. A new unit must be placed here.
LAYERS = (
    ("__init__", "seeds", "logs", "figures", "runfolder", "io", "transforms"),  # foundations
    ("reuse", "config", "store"),
    ("runtime", "gpus", "models", "data", "ray_train", "cli"),
    ("engine",),  # the training loops' shared engine: step engines, checkpoints, schedule, stopping
    ("ingest",),
    ("phantoms",),
    ("discovery",),  # the stages' libraries, in pipeline order
    ("train",),
    ("evaluate",),
    ("stages",),  # the only place that knows run folders, reuse records and which Ray job a stage starts
    ("discover", "pretrain", "__main__"),  # the commands (a package's __main__ too): nothing imports them
)


def _imports(root):
    """``(importer, imported)`` module names for every ``semgen_ray`` import under the package folder
    ``root`` (a name imported from a package that is a submodule counts as that submodule)."""
    import ast
    from pathlib import Path

    root = Path(root)
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in root.rglob("*.py")}
    found = []
    for path in sorted(root.rglob("*.py")):
        me = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == root.name:
                found += [(me, f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
                          for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(me, a.name) for a in node.names if a.name.split(".")[0] == root.name]
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":
        return "__main__"
    return parts[1] if len(parts) > 1 else "__init__"


def _layering_violations(root, layers) -> list[str]:
    rank = {unit: i for i, unit in enumerate(u for layer in layers for u in layer)}
    problems = set()
    for importer, imported in _imports(root):
        a, b = _unit(importer), _unit(imported)
        for unit in (a, b):
            if unit not in rank:
                problems.add(f"{unit}: not placed in LAYERS")
        if a != b and a in rank and b in rank and rank[b] >= rank[a]:
            problems.add(f"{importer} imports {imported}: {a} may not depend on {b}")
    return sorted(problems)


def test_packages_import_only_downwards():
    """The house's layers (``LAYERS``): foundations, config and store, runtime and models, then the
    stages' libraries in pipeline order, the stages wing and the commands on top. So there is no import cycle between
    packages, and nothing imports the commands. The check itself is checked on a small package."""
    from pathlib import Path

    root = Path(semgen_ray.__file__).parent
    units = {p.stem if p.is_file() else p.name for p in root.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert units | {"__main__"} == {u for layer in LAYERS for u in layer}, "every package and module has a layer"
    assert _layering_violations(root, LAYERS) == []


def test_the_layering_check_finds_upward_and_typing_only_imports(tmp_path):
    pkg = tmp_path / "pkg"
    for name, text in {"__init__.py": "", "low.py": "def f():\n    from pkg import high\n",
                       "high.py": "from pkg import low\nfrom typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg import top\n",
                       "top/__init__.py": "", "top/m.py": "import pkg.high\nfrom pkg.top import n\n",
                       "top/n.py": ""}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert _layering_violations(pkg, (("__init__", "low"), ("high",), ("top",))) == [
        "pkg.low imports pkg.high: low may not depend on high"]
    assert _layering_violations(pkg, (("__init__", "low", "high"),)) == [
        "pkg.low imports pkg.high: low may not depend on high", "top: not placed in LAYERS"]
