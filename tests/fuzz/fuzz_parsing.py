"""atheris fuzz target over the parsers that take outside input: job options, the YAML config, prompt
templates. Any exception other than the project's own errors (which carry a person-readable message)
is a bug. Run: ``python -m tests.fuzz.fuzz_parsing -max_total_time=60``."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from worker.config import load_settings
    from worker.core.prompts import render, segment_variables
    from worker.errors import FramescribeError
    from worker.options import JobOptions

_CONFIG = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
_VARS = segment_variables("clip.mp4", 0, 10_000, 2.0, "earlier")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 2)
    text = fdp.ConsumeUnicodeNoSurrogates(4096)
    try:
        if choice == 0:
            try:
                value = json.loads(text)
            except ValueError:
                return
            if isinstance(value, dict):
                JobOptions.parse(value)
        elif choice == 1:
            with open(_CONFIG.name, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.environ["FRAMESCRIBE_CONFIG"] = _CONFIG.name
            load_settings()
        else:
            render(text, _VARS)
    except FramescribeError as exc:
        assert exc.message, "every project error carries a message"


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
