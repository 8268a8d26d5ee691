"""docs/deploy.md is exercised: every command in its `sh` blocks is listed here with the
test (or CI step) that runs it, and a command added to the guide without one fails
`test_every_command_in_the_guide_is_exercised`.

The administration lines (`sudo petitionbot-admin ...`, `sudo systemctl ...`, the SQLite
restore) are run here literally, in the guide's order, by bash: `sudo` passes the command
through, `systemd-run` is a stand-in that does what the real one would (the unit's user is
recorded, its EnvironmentFile loaded, its folder entered), and `systemctl` a stand-in that
checks every unit it is given is one deploy/systemd/ ships. The unit files themselves pass
`systemd-analyze verify`; tests/e2e/test_production.py runs their ExecStart lines and
stops them with their KillSignal.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.infra.settings import TELEGRAM_SECRET
from models import AuditEntry, StaffUser
from models.db import make_engine, make_sessions
from tests.conftest import CONFIG, ROOT
from tests.fakes.telegram_api import FakeTelegram

GUIDE = ROOT / "docs" / "deploy.md"
UNITS = ROOT / "deploy" / "systemd"
ADMIN = ROOT / "deploy" / "petitionbot-admin"
ENV_EXAMPLE = ROOT / "deploy" / "petitionbot.env.example"
BIN = Path(sys.executable).parent
HERE = "tests/integration/test_deploy_guide.py::"
E2E = ("tests/e2e/test_production.py::"
       "test_production_like_start_signs_sends_reloads_reports_and_stops_cleanly")
PG_BACKUP = ("tests/integration/test_backup.py::"
             "test_the_printed_pg_dump_line_and_pg_restore_bring_back_the_same_signatures")
ADMIN_RUN = HERE + "test_the_guides_administration_lines_run_in_order"

# Every command in the guide, and what runs it.
EXERCISED = {
    "cd /opt/petitionbot": HERE + "test_the_units_use_the_guides_paths",
    "python3 -m venv .venv": "Makefile",
    ".venv/bin/pip install -e .": "Makefile",
    "sudo -u postgres createuser petitionbot": E2E,
    "sudo -u postgres createdb --owner=petitionbot petitionbot": E2E,
    "redis-cli -u redis://127.0.0.1:6379/0 ping": HERE + "test_the_redis_check",
    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'":
        HERE + "test_the_secret_maker_makes_usable_secrets",
    "gunicorn -c gunicorn.conf.py 'webhooks:create_app()'": E2E,
    "curl -fsS http://127.0.0.1:5000/healthz": E2E,
    'curl -fsS -H "Authorization: Bearer $METRICS_TOKEN" http://127.0.0.1:5000/metrics': E2E,
    "sudo -u petitionbot pg_dump --format=custom "
    "--file=/var/lib/petitionbot/backups/petitionbot.dump postgresql://petitionbot@/petitionbot":
        PG_BACKUP,
    "sudo -u postgres dropdb petitionbot": PG_BACKUP,
    "sudo -u petitionbot pg_restore --no-owner --exit-on-error "
    "--dbname=postgresql://petitionbot@/petitionbot "
    "/var/lib/petitionbot/backups/petitionbot.dump": PG_BACKUP,
}
# Run literally by test_the_guides_administration_lines_run_in_order.
ADMINISTRATION = re.compile(r"^(sudo (petitionbot-admin|systemctl|rm|install) |read -rs )")


def guide_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return [line.strip() for line in "\n".join(blocks).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_command_in_the_guide_is_exercised() -> None:
    unexercised = [c for c in guide_commands()
                   if c not in EXERCISED and not ADMINISTRATION.match(c)]
    assert not unexercised, f"add a test for these, and list it in EXERCISED: {unexercised}"
    stale = set(EXERCISED) - set(guide_commands())
    assert not stale, f"no longer in the guide: {stale}"
    for where in {*EXERCISED.values(), ADMIN_RUN}:
        if where == "Makefile":
            makefile = (ROOT / "Makefile").read_text()
            assert "-m venv $(VENV)" in makefile and "pip install --quiet -e" in makefile
            continue
        path, name = where.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), where


def test_readme_links_the_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running in production", 1)[1].split("\n## ", 1)[0]
    assert "docs/deploy.md" in section


# The unit files -------------------------------------------------------------------------------

def unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


SERVICES = ["petitionbot-web.service", "petitionbot-worker@.service",
            "petitionbot-telegram-poll.service"]


def test_the_units_use_the_guides_paths() -> None:
    for name in SERVICES:
        service = unit(name)
        assert service["User"] == service["Group"] == ["petitionbot"]
        assert service["EnvironmentFile"] == ["/etc/petitionbot/petitionbot.env"]
        assert service["WorkingDirectory"] == ["/var/lib/petitionbot"]
        assert service["ExecStart"][0].startswith("/opt/petitionbot/.venv/bin/")
        assert service["KillSignal"] == ["SIGTERM"]
        assert service["PartOf"] == ["petitionbot.target"]
        assert service["WantedBy"] == ["petitionbot.target"]
        # Every process writes its metrics to the same folder, kept until reboot.
        assert "petitionbot/metrics" in service["RuntimeDirectory"][0].split()
        assert service["RuntimeDirectoryPreserve"] == ["yes"]
    env = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
               if line and not line.startswith("#"))
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/run/petitionbot/metrics"
    assert env["PETITIONBOT_CONFIG"].startswith("/opt/petitionbot/")


def test_the_stop_timeouts_leave_room_for_a_graceful_stop() -> None:
    namespace: dict[str, object] = {}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"),
         namespace)
    web = unit("petitionbot-web.service")
    assert float(web["TimeoutStopSec"][0]) > float(str(namespace["graceful_timeout"]))
    assert web["ExecReload"] == ["/bin/kill -s HUP $MAINPID"]
    assert web["Type"] == ["notify"]
    assert namespace["forwarded_allow_ips"] == "" and namespace["preload_app"] is False
    # The worker joins its send threads for up to 90 s (bot/entry/worker.py) before exiting.
    assert float(unit("petitionbot-worker@.service")["TimeoutStopSec"][0]) > 90


@pytest.mark.parametrize(("database_url", "workers", "recycled"), [
    ("sqlite:///petitionbot.db", "1", False),                       # one process
    ("sqlite:///petitionbot.db", "2", True),
    ("postgresql://db.example.org/petitionbot", "", True),          # (2 x cores) + 1
])
def test_only_a_lone_worker_is_never_recycled(monkeypatch: pytest.MonkeyPatch,
                                              database_url: str, workers: str,
                                              recycled: bool) -> None:
    """Recycling a worker (max_requests) is harmless while others serve; a lone worker
    would leave nobody answering while it starts again."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("WEB_CONCURRENCY", workers)
    namespace: dict[str, object] = {}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"),
         namespace)
    assert (int(str(namespace["workers"])) > 1) == recycled
    assert bool(namespace["max_requests"]) == recycled


def test_the_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("PETITIONBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail("systemd-analyze is needed to check deploy/systemd/")
        pytest.skip("systemd-analyze is not installed")
    for path in UNITS.iterdir():
        text = path.read_text().replace("/opt/petitionbot/.venv/bin/", f"{BIN}/")
        (tmp_path / path.name).write_text(text.replace("/opt/petitionbot/", f"{ROOT}/"))
    shutil.copy(tmp_path / "petitionbot-worker@.service", tmp_path / "petitionbot-worker@1.service")
    names = ["petitionbot.target", "petitionbot-web.service", "petitionbot-worker@1.service",
             "petitionbot-telegram-poll.service"]
    done = subprocess.run(["systemd-analyze", "verify", *names], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_environment_example_lists_only_known_variables() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert f"`{name}`" in readme, f"{name} is not in README.md's table"


# Small commands ------------------------------------------------------------------------------

def test_the_secret_maker_makes_usable_secrets() -> None:
    [line] = [c for c in guide_commands() if "token_urlsafe" in c]
    made = subprocess.run(["bash", "-c", line.replace("python3", sys.executable, 1)],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    assert len(made) == 64 and TELEGRAM_SECRET.match(made)  # fit for every secret, webhook's too


def test_the_redis_check() -> None:
    [line] = [c for c in guide_commands() if c.startswith("redis-cli")]
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and os.environ.get("PETITIONBOT_REQUIRE_POSTGRES") != "1":
        pytest.skip(f"Redis is not answering: {done.stderr}")
    assert done.stdout.strip() == "PONG"


# The administration lines, literally ---------------------------------------------------------

SYSTEMD_RUN = r'''#!PYTHON
"""Stand-in for systemd-run: record the options, then run the command as the unit would
(its EnvironmentFile loaded into an otherwise bare environment, in its folder)."""
import json, os, sys
args = sys.argv[1:]
options = []
while args and args[0].startswith("--"):
    options.append(args.pop(0))
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({"tool": "systemd-run", "options": options, "command": args}) + "\n")
env = {"PATH": os.environ["PATH"], "STUB_LOG": os.environ["STUB_LOG"]}
for option in options:
    if option.startswith("--working-directory="):
        os.chdir(option.split("=", 1)[1])
    if option.startswith("--property=EnvironmentFile="):
        for line in open(option.split("=", 2)[2]):
            if line.strip() and not line.startswith("#"):
                key, value = line.strip().split("=", 1)
                env[key] = value
os.execvpe(args[0], args, env)
'''

SYSTEMCTL = r'''#!PYTHON
"""Stand-in for systemctl: every unit named must be one deploy/systemd/ ships."""
import json, os, re, sys
shipped = set(os.listdir(os.environ["STUB_UNITS"]))
for name in sys.argv[1:]:
    if name.startswith("-") or name in ("daemon-reload", "enable", "disable", "start", "stop",
                                         "restart", "reload"):
        continue
    template = re.sub(r"@[^.]+\.", "@.", name)
    if name not in shipped and template not in shipped:
        sys.exit(f"systemctl: no such unit in deploy/systemd/: {name}")
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({"tool": "systemctl", "args": sys.argv[1:]}) + "\n")
'''


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Path, Path, FakeTelegram]]:
    """A stand-in host: /opt/petitionbot (this checkout's virtual environment),
    /var/lib/petitionbot, /etc/petitionbot/petitionbot.env, and the two stubs."""
    home, state, stubs = tmp_path / "opt", tmp_path / "var-lib", tmp_path / "stubs"
    for folder in (home / ".venv", state / "backups", stubs):
        folder.mkdir(parents=True)
    (home / ".venv" / "bin").symlink_to(BIN)
    for name, text in (("systemd-run", SYSTEMD_RUN), ("systemctl", SYSTEMCTL)):
        (stubs / name).write_text(text.replace("PYTHON", sys.executable, 1))
        (stubs / name).chmod(0o755)
    with FakeTelegram() as telegram:
        env_file = tmp_path / "petitionbot.env"
        env_file.write_text("\n".join([
            f"DATABASE_URL=sqlite:///{state / 'petitionbot.db'}",
            f"PETITIONBOT_CONFIG={CONFIG}", "PUBLIC_BASE_URL=https://petition.example.org",
            "SECRET_KEY=guide-test-secret-key", "LOG_FORMAT=json",
            f"TELEGRAM_BOT_TOKEN={telegram.token}", f"TELEGRAM_API_BASE_URL={telegram.base_url}",
            "TELEGRAM_WEBHOOK_SECRET=guide-webhook-secret"]) + "\n")
        yield tmp_path, state, telegram


def test_the_guides_administration_lines_run_in_order(
        host: tuple[Path, Path, FakeTelegram]) -> None:
    root, state, telegram = host
    log = root / "stubs.log"
    env = {"PATH": f"{root / 'stubs'}:{ADMIN.parent}:{os.environ['PATH']}",
           "STUB_LOG": str(log), "STUB_UNITS": str(UNITS), "HOME": str(root),
           "PETITIONBOT_HOME": str(root / "opt"), "PETITIONBOT_STATE": str(state),
           "PETITIONBOT_ENV_FILE": str(root / "petitionbot.env")}
    me = f"-o {pwd.getpwuid(os.getuid()).pw_name} -g {grp.getgrgid(os.getgid()).gr_name}"
    ran = []
    for line in guide_commands():
        if not ADMINISTRATION.match(line):
            continue
        # This host's folders, and its own user (there is no `petitionbot` user here).
        command = line.replace("/var/lib/petitionbot", str(state)).replace(
            "-o petitionbot -g petitionbot", me)
        done = subprocess.run(["bash", "-c", 'sudo() { "$@"; }; ' + command], env=env,
                              input="correct-horse-battery-staple\n", capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        ran.append((line, done.stdout))
    said = "\n".join(f"$ {line}\n{out}" for line, out in ran)
    migrations = len(list((ROOT / "models" / "migrations" / "versions").glob("*.py")))
    assert f"Database is up to date ({migrations} migration(s) applied)" in said
    assert "you@example.org may now log in" in said
    assert "Telegram will deliver updates to https://petition.example.org/telegram/webhook" in said
    assert "would remove" in said and "Retention removed" in said
    assert "Backed up" in said

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    runs = [c for c in calls if c["tool"] == "systemd-run"]
    assert runs and all({"--uid=petitionbot", "--gid=petitionbot", "--wait", "--pipe"}
                        <= set(c["options"]) for c in runs)
    assert all(c["command"][0] == str(root / "opt" / ".venv" / "bin" / "petitionbot")
               for c in runs)
    assert ["enable", "petitionbot.target", "petitionbot-web.service",
            "petitionbot-worker@1.service", "petitionbot-worker@2.service",
            "petitionbot-telegram-poll.service"] in [c.get("args") for c in calls]

    webhook = telegram.webhook
    assert webhook is not None and webhook["url"] == (
        "https://petition.example.org/telegram/webhook")
    backup = state / "backups" / "petitionbot.db"
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    database = state / "petitionbot.db"
    assert oct(database.stat().st_mode & 0o777) == "0o600"  # restored by `install -m 0600`
    with sqlite3.connect(database) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with make_sessions(engine)() as session:
            assert session.scalar(select(StaffUser.email)) == "you@example.org"
            assert session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "retention.run")) == 1
    finally:
        engine.dispose()
