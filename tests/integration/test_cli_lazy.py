"""The lazy top-level group (issue 19, goal 3): ``framescribe --help`` lists every command from the static
``worker.cli.COMMANDS`` table without importing a command module, and the listing is exactly the one Typer
writes from the real commands; a command's module is imported only when that command runs."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from typer._click.utils import make_default_short_help
from typer.main import get_command_name

from worker.cli import COMMAND_MODULES, COMMANDS, _register_command_modules, app

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
eager = json.loads(sys.argv[2])
sys.argv = ["framescribe", *json.loads(sys.argv[1])]
from worker.cli import _register_command_modules, main
if eager:  # every module imported first: Typer builds every command, as before the lazy group
    _register_command_modules()
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def run_lazy(args: list[str], eager: bool = False) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    full = {**os.environ, "FRAMESCRIBE_CONFIG": str(ROOT / "configs" / "default.yaml")}
    full.pop("COLUMNS", None)
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(eager)], capture_output=True,
                         text=True, env=full, cwd=ROOT, timeout=120)  # fmt: skip
    line = next(ln for ln in res.stderr.splitlines() if ln.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES "))), res


def real_commands() -> list[tuple[str, str, str]]:
    """(name, module, first sentence of help) of every registered command and group, in Typer's order."""
    _register_command_modules()
    rows = []
    for info in app.registered_commands:
        assert info.callback is not None
        doc = inspect.getdoc(info.callback) if info.help is None else info.help
        name = info.name or get_command_name(info.callback.__name__)
        rows.append((name, info.callback.__module__, make_default_short_help(doc or "", 10**6)))
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None and group.name is not None
        module = {c.callback.__module__ for c in sub.registered_commands if c.callback is not None}
        assert len(module) == 1, module
        help_text = sub.info.help
        assert isinstance(help_text, str)
        rows.append((group.name, module.pop(), make_default_short_help(help_text, 10**6)))
    return rows


def test_the_table_is_the_real_commands() -> None:
    assert real_commands() == COMMANDS
    assert {module for _, module, _ in COMMANDS} <= set(COMMAND_MODULES)


def test_help_lists_every_command_as_typer_does_without_importing_one() -> None:
    modules, res = run_lazy(["--help"])
    assert res.returncode == 0, res.stderr
    assert not modules & set(COMMAND_MODULES), sorted(modules & set(COMMAND_MODULES))
    eager_modules, eager = run_lazy(["--help"], eager=True)
    assert set(COMMAND_MODULES) <= eager_modules
    assert res.stdout == eager.stdout
    for name, _, _ in COMMANDS:
        assert f"\n  {name} " in res.stdout or res.stdout.rstrip().endswith(f"  {name}")


def test_a_command_imports_only_its_own_module() -> None:
    modules, res = run_lazy(["sample", "--help"])
    assert res.returncode == 0, res.stderr
    assert "--fps" in res.stdout
    assert "worker.cli_sample" in modules
    assert not modules & (set(COMMAND_MODULES) - {"worker.cli_sample"})


def test_a_sub_group_is_built_when_used() -> None:
    modules, res = run_lazy(["jobs", "--help"])
    assert res.returncode == 0, res.stderr
    assert "list" in res.stdout and "worker.cli_jobs" in modules
    _, res = run_lazy(["jobs", "list", "--limit", "0"])
    assert "framescribe: error:" in res.stderr and "--limit" in res.stderr  # its parameters were built and checked


def test_unknown_command_is_one_line_and_imports_nothing() -> None:
    modules, res = run_lazy(["nope"])
    assert "No such command 'nope'" in res.stderr and "Traceback" not in res.stderr
    assert not modules & set(COMMAND_MODULES)


def test_a_command_module_run_as_main_is_not_imported_again() -> None:
    """``python -m worker.cli_sample`` (the benchmarks' command) uses the command its ``__main__`` registered."""
    env = {**os.environ, "FRAMESCRIBE_CONFIG": str(ROOT / "configs" / "default.yaml")}
    probe = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('SECOND COPY', 'worker.cli_sample' in sys.modules))\n"
        "sys.argv = ['cli_sample', '--help']\n"
        "runpy.run_module('worker.cli_sample', run_name='__main__', alter_sys=True)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert "--fps" in res.stdout, res.stderr
    assert "SECOND COPY False" in res.stdout


def test_sample_loads_no_store_queue_model_or_console_library(tmp_path: Path) -> None:
    """``framescribe sample`` (goal 1's command): video libraries and settings, nothing else heavy."""
    from tests.media import make_lavfi_video

    video = tmp_path / "v.mp4"
    make_lavfi_video(video, seconds=2, size=(160, 120), fps=10, gop=10)
    modules, res = run_lazy(["sample", str(video), "--fps", "1", "--out", str(tmp_path / "out")])
    assert "wrote 2 frames" in res.stdout, res.stderr
    assert (tmp_path / "out" / "frames.csv").is_file()
    tops = modules | {m.split(".")[0] for m in modules}
    unwanted = tops & {"rich", "sqlalchemy", "alembic", "celery", "kombu", "dashscope", "httpx", "redis"}
    assert not unwanted, sorted(unwanted)
