"""The conversation core (every module in bot/core/) and the pure helpers around it import no
database, web or provider library: checked in a fresh interpreter, so nothing another test
imported can hide a dependency. (The import contracts in .importlinter say the same of the
source; this checks what really loads.)"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import bot.core

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


CORE = [f"bot.core.{m.name}" for m in pkgutil.iter_modules(bot.core.__path__)]


@pytest.mark.parametrize("module", [*CORE, "bot.shell.petitions", "bot.infra.config"])
def test_the_core_imports_no_database_web_or_provider_library(module: str) -> None:
    loaded = imported_by(module)
    assert "bot" in loaded  # the probe really imported it
    assert not loaded & set(FORBIDDEN), f"{module} pulls in {sorted(loaded & set(FORBIDDEN))}"


def test_the_probe_would_notice_a_forbidden_import() -> None:
    assert {"sqlalchemy"} <= imported_by("bot.shell.service")
