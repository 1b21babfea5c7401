"""The top-level ``framescribe`` group, built lazily: a command's module is imported, and its Click
parameters built from its signature, only when that command runs (or shows its own help).

Typer builds every command's Click parameters from its function signature (``get_type_hints`` and a
``ParamMeta`` per parameter) before it even parses argv: with 19 commands that was most of what
``framescribe --help`` cost beyond ``import typer``. The group's help listing needs only each command's
name and first docstring paragraph, which ``worker.cli.COMMANDS`` keeps in a static table (a test checks
it against the real commands, so it cannot drift).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from typer import main as typer_main
from typer._click.core import Command, Context
from typer._click.formatting import HelpFormatter
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo


class LazyGroup(TyperGroup):
    """A TyperGroup whose commands come from ``worker.cli.COMMANDS`` (name, module, help) and are built
    on first use. Modules imported before the group was built (tests that register every module) are
    used as Typer built them."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        from worker.cli import COMMANDS

        self._table = {name: (module, short) for name, module, short in COMMANDS}
        self._built = {name for name, (module, _) in self._table.items() if module in sys.modules}

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self._table, *(name for name in self.commands if name not in self._table)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in self._table and cmd_name not in self._built:
            self._build(cmd_name)
        return self.commands.get(cmd_name)

    def _build(self, cmd_name: str) -> None:
        from worker.cli import app

        self._built.add(cmd_name)
        if self._command_info(cmd_name) is None:  # not registered yet (``python -m worker.cli_sample`` has)
            importlib.import_module(self._table[cmd_name][0])
        markup, short = app.rich_markup_mode, app.pretty_exceptions_short
        info = self._command_info(cmd_name)
        if info is not None:
            self.commands[cmd_name] = typer_main.get_command_from_info(
                info, pretty_exceptions_short=short, rich_markup_mode=markup
            )
            return
        for group in app.registered_groups:
            if group.name == cmd_name:
                self.commands[cmd_name] = typer_main.get_group_from_info(
                    group, pretty_exceptions_short=short, rich_markup_mode=markup, suggest_commands=app.suggest_commands
                )

    @staticmethod
    def _command_info(cmd_name: str) -> CommandInfo | None:
        from worker.cli import app

        for info in app.registered_commands:
            assert info.callback is not None
            if (info.name or typer_main.get_command_name(info.callback.__name__)) == cmd_name:
                return info
        return None

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The listing from the table, as TyperGroup writes it: a stand-in Command carrying the command's
        help gives the same short help, and nothing is imported or built."""
        rows: list[tuple[str, Command]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) if name in self._built or name not in self._table else None
            cmd = cmd or TyperCommand(name=name, help=self._table[name][1])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])
