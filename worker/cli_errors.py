"""One error style for every ``framescribe`` command.

Every failure is one line on stderr, ``framescribe: error: …``; the exit code is 2 for bad input
(options, arguments, config file, ``FRAMESCRIBE_*`` values) and 1 for failures. Click's parse errors
are turned into that line too (instead of Typer's multi-line box).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer.core
from typer._click import exceptions as click_exc
from typer._click.core import Context
from typer.exceptions import Abort

from worker.errors import ConfigError, FramescribeError, InputError

T = TypeVar("T")
BAD_INPUT = 2
FAILURE = 1


def error_line(message: str) -> str:
    """``framescribe: error: …`` on one line, whatever the message held."""
    return "framescribe: error: " + " ".join(message.split())


def fail(message: str, code: int) -> SystemExit:
    sys.stderr.write(error_line(message) + "\n")
    sys.stderr.flush()
    return SystemExit(code)


def exit_code(exc: FramescribeError) -> int:
    return BAD_INPUT if isinstance(exc, InputError | ConfigError) else FAILURE


def _usage_line(exc: click_exc.UsageError) -> str:
    where = exc.ctx.command_path if exc.ctx is not None else "framescribe"
    return f"{exc.format_message()} (see '{where} --help')"


def run_click(call: Callable[[], Any]) -> None:
    """Run Typer in non-standalone mode and map its outcomes to exit codes and one-line errors."""
    try:
        rv = call()
    except click_exc.NoArgsIsHelpError as exc:  # `framescribe` alone: the help, as before
        exc.show()
        raise SystemExit(0) from None
    except click_exc.UsageError as exc:
        raise fail(_usage_line(exc), BAD_INPUT) from None
    except click_exc.ClickException as exc:  # e.g. a file option that cannot be opened
        raise fail(exc.format_message(), BAD_INPUT if exc.exit_code == 2 else FAILURE) from None
    except Abort:
        sys.stderr.write("framescribe: interrupted\n")
        raise SystemExit(130) from None
    if isinstance(rv, int) and rv:  # typer.Exit(code) inside a command
        raise SystemExit(rv)


def guard(fn: Callable[[], T]) -> T | None:
    """A FramescribeError becomes one line and exit code 2 (input, config) or 1, never a traceback."""
    try:
        return fn()
    except FramescribeError as exc:
        raise fail(exc.message, exit_code(exc)) from None
    except KeyboardInterrupt:
        sys.stderr.write("framescribe: interrupted\n")
        raise SystemExit(130) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("FRAMESCRIBE_DEBUG"):
            raise
        raise fail(f"internal error: {type(exc).__name__}: {exc} (FRAMESCRIBE_DEBUG=1 shows more)", FAILURE) from None


def _flag_type(self: Any, ctx: Context) -> str | None:
    """Help shows no ``<bool>`` after an on/off flag: ``--dry-run``, not ``--dry-run <bool>``."""
    if getattr(self, "is_flag", False) and not getattr(self, "count", False):
        return None
    return _display_type_rich(self, ctx)


_display_type_rich = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
