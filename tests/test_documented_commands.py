"""Every command line the documentation shows parses with the command's own parser.

The README, cluster/README.md, datasets/README.md and docs/ show ``python -m semgen_ray.…`` and
``semgen-…`` lines, in code blocks and in inline code. A flag renamed in the code and not in the text
(or a value outside a flag's choices, a missing required flag) fails here with the file and line. The
commands are only parsed, nothing runs: the runs of the documented commands are the tests that name
their blocks (tests/test_readme_quick_tour.py, tests/test_local_job.py,
tests/cluster/test_object_store_run.py, tests/datasets/test_dataset_cards.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"semgen-ingest": "semgen_ray.ingest", "semgen-phantoms": "semgen_ray.phantoms",
           "semgen-discover": "semgen_ray.discover", "semgen-pretrain": "semgen_ray.pretrain",
           "semgen-evaluate": "semgen_ray.evaluate"}
COMMAND = re.compile(r"(?:python -m (semgen_ray(?:\.[a-z_]+)*)|(?<![\w/-])(semgen-(?:ingest|phantoms|discover|"
                     r"pretrain|evaluate)))(?![\w.-])(.*)")
SHELL_END = re.compile(r"\s(?:\||&&|;|>|2>|#)|`")  # where the command's own words end


def _documents() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True).stdout.split()
    return [REPO / name for name in listed if not name.startswith("benchmarks/results/")]


def _code(text: str):
    """(line number, code) for every line of a fenced block (continuations joined) and every inline span."""
    fenced = False
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            if not pending:
                start = number
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            yield start, pending
            pending = ""
        else:
            for span in re.findall(r"`([^`]+)`", line):
                yield number, span


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, module, argument words) of every documented semgen_ray command."""
    found = []
    for path in _documents():
        for number, code in _code(path.read_text()):
            if "kubectl" in code:  # there semgen-pretrain is the name of a RayJob resource
                continue
            for match in COMMAND.finditer(code):
                module = match.group(1) or SCRIPTS[match.group(2)]
                words = shlex.split(SHELL_END.split(" " + match.group(3), maxsplit=1)[0])
                if words:  # a bare name in the prose is not a command line
                    found.append((f"{path.relative_to(REPO)}:{number}", module, words))
    return found


def _parse(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """Parse a command line; a synopsis (``[--flag VALUE]``, ``...``, ``A|B``) only has its flags
    checked, and placeholders in capitals (``--n N``) stand for a value of the right type."""
    if any(w.startswith("[") or w.endswith("]") or w == "..." for w in words):
        known = {s for action in parser._actions for s in action.option_strings}
        flags = [w.strip("[]").split("|")[0].split("=")[0] for w in words]
        unknown = [f for f in flags if f.startswith("-") and f not in known]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(words)
    except SystemExit:  # once more with a number for each placeholder
        parser.parse_args(["1" if re.fullmatch(r"[A-Z][A-Z_]*", w) else w for w in words])


def build_parser(module: str) -> argparse.ArgumentParser:
    for name in (f"{module}.__main__", module):
        with contextlib.suppress(ModuleNotFoundError):
            return importlib.import_module(name).build_parser()
    raise AssertionError(f"{module} is not a command of semgen_ray")


def test_the_documents_show_commands_of_every_stage():
    modules = {module for _, module, _ in documented_commands()}
    assert set(SCRIPTS.values()) <= modules, set(SCRIPTS.values()) - modules


def test_every_documented_command_parses():
    problems = []
    for where, module, words in documented_commands():
        if "-h" in words or "--help" in words:
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                _parse(build_parser(module), words)
        except SystemExit:
            problems.append(f"{where}: python -m {module} {shlex.join(words)}\n    "
                            + err.getvalue().strip().splitlines()[-1])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("words, message", [(["--no-such-flag"], "unrecognized arguments"),
                                            (["--stages"], "expected one argument"),
                                            (["[--config", "FILE]", "[--no-such-flag]"], "--no-such-flag")])
def test_a_wrong_flag_is_caught(words, message):
    err = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stderr(err):
        _parse(build_parser("semgen_ray.pretrain"), words)
    assert message in err.getvalue()
