"""The conversation core and the pure helpers around it import no I/O library: checked in a
fresh interpreter, so nothing another test imported can hide a dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("sqlalchemy", "flask", "telegram", "twilio", "werkzeug")
PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def imported_by(module: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True,
                            text=True, check=True, timeout=60)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", [
    "bot.conversation", "bot.texts", "bot.render", "bot.gsm", "bot.postcodes", "bot.petitions",
])
def test_the_core_imports_no_database_web_or_provider_library(module: str) -> None:
    loaded = imported_by(module)
    assert "bot" in loaded  # the probe really imported it
    assert not loaded & set(FORBIDDEN), f"{module} pulls in {sorted(loaded & set(FORBIDDEN))}"


def test_the_probe_would_notice_a_forbidden_import() -> None:
    assert {"sqlalchemy"} <= imported_by("bot.service")
