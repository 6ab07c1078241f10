"""The command lines' shared part (``semgen_ray.cli``, ``semgen_ray.logs``): flags, console, errors, Ctrl-C.

No Ray: the stages' own behaviour is tested through their ``main`` in their test modules.
"""

import importlib
import logging
import re
import tomllib
from pathlib import Path

import pytest

from semgen_ray import cli, logs

ENTRY_POINTS = {"pretrain": "semgen_ray.pretrain", "discover": "semgen_ray.discover",
                "evaluate": "semgen_ray.evaluate.__main__", "ingest": "semgen_ray.ingest.__main__",
                "phantoms": "semgen_ray.phantoms.__main__"}


@pytest.mark.parametrize("stage", sorted(ENTRY_POINTS))
def test_every_stage_has_the_common_flags_and_a_console_script(stage):
    module = importlib.import_module(ENTRY_POINTS[stage])
    flags = {s for action in module.build_parser()._actions for s in action.option_strings}
    assert {"--config", "--set", "--force", "--quiet", "--verbose", "--help"} <= flags
    if stage in ("pretrain", "evaluate", "discover"):
        assert "--run-dir" in flags
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[f"semgen-{stage}"] == f"{ENTRY_POINTS[stage]}:main"


def test_one_console_format_progress_on_stdout_warnings_on_stderr(capsys):
    logs.configure()
    logs.configure()  # again: still one handler
    log = logging.getLogger("semgen_ray.some.stage")
    log.info("[stage] step 1 of 2")
    log.debug("[stage] details")
    log.warning("[stage] something is off")
    out, err = capsys.readouterr()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[stage\] step 1 of 2\n", out)
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING \[stage\] something is off\n", err)
    record = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "accelerator noise", None, None)
    assert not logging.getLogger("DeepSpeed").filter(record)  # DeepSpeed's own lines: errors only
    logs.configure(logs.QUIET)
    log.info("[stage] step 2 of 2")
    assert capsys.readouterr().out == ""
    logs.configure(logs.VERBOSE)
    log.debug("[stage] details")
    assert "[stage] details" in capsys.readouterr().out and logs.verbose()
    assert logging.getLogger("DeepSpeed").filter(record)
    logs.configure()
    with pytest.raises(ValueError, match="verbosity"):
        logs.configure(2)


def test_errors_and_ctrl_c_end_a_command_with_one_line(capsys):
    from semgen_ray.stages.pipeline import StageError

    args = cli.parser("python -m semgen_ray.x", "x", set_example="a.b=1", force="redo").parse_args([])

    def raises(err):
        def body():
            raise err
        return body

    assert cli.run(args, raises(KeyboardInterrupt()), interrupted=lambda: "run it again") == 130
    assert capsys.readouterr().err.strip() == "interrupted: run it again"
    assert cli.run(args, raises(StageError("no pattern manifest"))) == 1
    assert capsys.readouterr().err == "error: no pattern manifest\n"
    assert cli.run(args, raises(cli.CommandError("bad flag", status=2))) == 2
    with pytest.raises(ZeroDivisionError):  # a bug is not dressed up as a user error
        cli.run(args, raises(ZeroDivisionError()))
    bad = cli.parser("p", "x", set_example="a.b=1", force="redo").parse_args(["--set", "train.lr=-1"])
    assert cli.run(bad, lambda: cli.load(bad) and 0) == 2
    assert "train.lr must be positive" in capsys.readouterr().err
