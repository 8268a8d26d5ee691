"""A production-like start, following docs/deploy.md: a database and its owner role made
with createuser/createdb, `petitionbot db upgrade`, then the processes exactly as the unit
files in deploy/systemd/ start them (their ExecStart lines, the environment from
deploy/petitionbot.env.example): gunicorn with two workers, one broadcast worker, Telegram
long polling; PostgreSQL, Redis, PROMETHEUS_MULTIPROC_DIR, JSON logs, one trusted proxy.

Amira and Omar sign by SMS (signed POSTs to /twilio/messages, as nginx relays them), Kai
by Telegram (through the fake Bot API); an announcement goes out (`petitionbot announce
--send`, Twilio REST on a loopback fake); Twilio reports a delivery; gunicorn is reloaded
(SIGHUP) and keeps answering; /metrics is scraped with the guide's curl line and parsed
with prometheus-client's parser; everything stops on SIGTERM with exit code 0; and no log
line holds a phone number, a name, a message or a secret.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from models import Delivery
from models.broadcast import OPEN
from models.db import make_engine, make_sessions
from tests.conftest import CONFIG, PG_URL, ROOT, TWILIO_SID, TWILIO_TOKEN
from tests.e2e.telegram_chat import keywords
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.twilio_api import FakeTwilio
from tests.integration.twilio_helpers import sign, sms_payload

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = ROOT / "deploy" / "petitionbot.env.example"
GUIDE = ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/6")
PUBLIC = "https://petition.example.org"
PROXY = {"X-Forwarded-For": "198.51.100.20", "X-Forwarded-Proto": "https",
         "Host": "petition.example.org"}          # what nginx adds (docs/deploy.md, 8)
AMIRA, OMAR, KAI = "+447700900501", "+447700900502", 5550123
ANNOUNCEMENT = "Thank you all: NHS England has agreed to meet us on Friday."
METRICS_TOKEN = "e2e-metrics-token-0123456789"
WAIT = 60  # seconds: generous for a loaded CI machine; never asserted as a duration
NEVER_LOGGED = ["Amira", "Okafor", "Omar", "Haddad", "Kai", "Nakamura", "SW1A", "EH1 1YZ",
                "G1 1AA", "poster at the clinic", "NHS England has agreed", "Hello from PLANETS",
                "7700900501", "7700900502", str(KAI), TWILIO_TOKEN, METRICS_TOKEN]


# The guide's pieces ------------------------------------------------------------------------

def unit_lines(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1].strip() for line in (UNITS / unit).read_text().splitlines()
            if line.startswith(f"{key}=")]


def exec_start(unit: str) -> list[str]:
    """The unit's ExecStart, pointed at this checkout and its virtual environment."""
    [line] = unit_lines(unit, "ExecStart")
    line = line.replace("/opt/petitionbot/.venv/bin/", f"{BIN}/")
    return shlex.split(line.replace("/opt/petitionbot/", f"{ROOT}/"))


def stop_timeout(unit: str) -> float:
    [value] = unit_lines(unit, "TimeoutStopSec")
    return float(value)


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= reads this file."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def guide_command(pattern: str) -> str:
    """The first command line in the guide's sh blocks that matches `pattern`."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    for line in "\n".join(blocks).splitlines():
        if re.search(pattern, line):
            return line.strip()
    raise AssertionError(f"docs/deploy.md has no command matching {pattern!r}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Processes ---------------------------------------------------------------------------------

@dataclass
class Running:
    unit: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.unit} exited with {self.process.returncode}:\n"
                        f"{self.output()[-4000:]}")

    def stop(self) -> int:
        """As systemd stops it: the unit's KillSignal (SIGTERM), within TimeoutStopSec."""
        assert unit_lines(self.unit, "KillSignal") == ["SIGTERM"]
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=stop_timeout(self.unit))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.unit} still running {stop_timeout(self.unit)}s after SIGTERM:"
                        f"\n{self.output()[-4000:]}")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start units as systemd would (their folder, environment, ExecStart); any still
    running at the end are killed, by process id."""
    running: list[Running] = []

    def start(unit: str, env: dict[str, str], state: Path) -> Running:
        log = tmp_path / f"{unit}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(exec_start(unit), cwd=state, env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        running.append(Running(unit, process, log))
        return running[-1]

    yield start
    for unit in running:
        if unit.process.poll() is None:
            unit.process.kill()
            unit.process.wait(timeout=30)


@pytest.fixture
def production_db() -> Iterator[str]:
    """docs/deploy.md, 3: a role and a database it owns (createuser, createdb --owner)."""
    server = make_url(PG_URL)
    host = ["--host", server.host or "127.0.0.1", "--port", str(server.port or 5432)]
    if server.username:
        host += ["--username", server.username]
    name = f"petitionbot_e2e_{uuid.uuid4().hex[:8]}"
    assert guide_command(r"createuser").endswith("createuser petitionbot")
    subprocess.run(["createuser", *host, name], check=True, timeout=60)
    subprocess.run(["createdb", *host, f"--owner={name}", name], check=True, timeout=60)
    try:
        yield (f"postgresql://{name}@{server.host or '127.0.0.1'}:{server.port or 5432}/"
               f"{name}")
    finally:
        subprocess.run(["dropdb", *host, "--if-exists", "--force", name], timeout=60)
        subprocess.run(["dropuser", *host, "--if-exists", name], timeout=60)


@pytest.fixture
def shared_redis() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not answering at {REDIS_URL} (docs/deploy.md, 4): {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """config.toml as shipped, but no quiet hours and SMS at 1 a second (so the second
    SMS of the announcement waits for its slot: a rate-limit wait to count)."""
    source = CONFIG.read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^quiet_hours\s*=.*$", 'quiet_hours = ""', source)
    changed = re.sub(r"(?m)^rates\s*=.*$", "rates = { telegram = 25, sms = 1, whatsapp = 20 }",
                     changed)
    changed = re.sub(r'(?m)^issue_file\s*=\s*"(.*)"',
                     lambda m: f'issue_file = "{(ROOT / m[1]).as_posix()}"', changed)
    path = tmp_path / "config.toml"
    path.write_text(changed, encoding="utf-8")
    return path


# Talking to it -------------------------------------------------------------------------------

def texts_of(response: requests.Response) -> list[str]:
    assert response.status_code == 200, (response.status_code, response.text)
    return [m.text or "" for m in ET.fromstring(response.content).iter("Message")]


def sms(port: int, sender: str, body: str) -> list[str]:
    """One inbound SMS as Twilio sends it, signed for the public URL, relayed by nginx."""
    params = sms_payload(sender, body)
    response = requests.post(f"http://127.0.0.1:{port}/twilio/messages", data=params,
                             headers={"X-Twilio-Signature": sign(params), **PROXY}, timeout=30)
    return texts_of(response)


def wait_until(condition: Callable[[], Any], what: str, *watched: Running) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        for unit in watched:
            unit.alive()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {u.unit} ---\n{u.output()[-3000:]}" for u in watched)
            pytest.fail(f"{what}: not within {WAIT}s\n{logs}")
        time.sleep(0.05)


def healthy(port: int) -> dict[str, Any] | None:
    try:  # refused, or accepted but not answered while the workers still load the app
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics with the guide's own curl line, parsed by prometheus-client's parser."""
    line = guide_command(r"curl .*/metrics").replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], "METRICS_TOKEN": METRICS_TOKEN})
    assert done.returncode == 0, done.stderr
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(done.stdout)
            for s in family.samples}


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# The test ------------------------------------------------------------------------------------

def test_production_like_start_signs_sends_reloads_reports_and_stops_cleanly(
        production_db: str, shared_redis: str, config_file: Path, tmp_path: Path,
        started: Callable[..., Running]) -> None:
    state = tmp_path / "var-lib-petitionbot"
    state.mkdir()
    port = free_port()
    with FakeTelegram() as telegram, FakeTwilio(TWILIO_SID, TWILIO_TOKEN) as twilio:
        # docs/deploy.md, 5: the environment file, with this machine's values.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
        env.update(env_file(ENV_EXAMPLE))
        env.update(
            DATABASE_URL=production_db, PETITIONBOT_CONFIG=str(config_file),
            PUBLIC_BASE_URL=PUBLIC, REDIS_URL=shared_redis, SECRET_KEY=uuid.uuid4().hex,
            METRICS_TOKEN=METRICS_TOKEN, TWILIO_ACCOUNT_SID=TWILIO_SID,
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_MESSAGING_SERVICE_SID="MG" + "1" * 32,
            TWILIO_API_BASE_URL=twilio.base_url, TELEGRAM_BOT_TOKEN=telegram.token,
            TELEGRAM_API_BASE_URL=telegram.base_url, TELEGRAM_WEBHOOK_SECRET="e2e-secret",
            WEB_CONCURRENCY="2", PORT=str(port), HOST="127.0.0.1",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "run-petitionbot" / "metrics"))
        assert (env["TRUSTED_PROXIES"], env["LOG_FORMAT"]) == ("1", "json")

        upgrade = subprocess.run([str(BIN / "petitionbot"), "db", "upgrade"], cwd=state,
                                 env=env, capture_output=True, text=True, timeout=120)
        assert upgrade.returncode == 0, upgrade.stderr
        assert "Database is up to date" in upgrade.stdout

        web = started("petitionbot-web.service", env, state)
        worker = started("petitionbot-worker@.service", env, state)
        poller = started("petitionbot-telegram-poll.service", env, state)
        units = (web, worker, poller)
        health = wait_until(lambda: healthy(port), "/healthz answers", *units)
        assert health == {"status": "ok", "database": "ok", "redis": "ok"}
        check = guide_command(r"curl .*/healthz").replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and json.loads(done.stdout) == health, done.stderr
        assert exec_start("petitionbot-web.service")[1:] == [
            "-c", f"{ROOT}/gunicorn.conf.py", "webhooks:create_app()"]

        # Amira and Omar sign by SMS, through the proxy.
        said = [sms(port, AMIRA, body) for body in (
            "Hi, I saw your poster at the clinic", "SIGN", "YES", "Amira Okafor", "SW1A 1AA",
            "YES", "YES")]
        assert "Hello from PLANETS" in said[0][0]
        assert "Your signature is number 1 here" in said[5][0]
        for body in ("Hi", "SIGN", "YES", "Omar Haddad", "EH1 1YZ", "YES", "YES"):
            assert sms(port, OMAR, body)

        # Kai signs by Telegram, through `petitionbot telegram-poll`.
        steps = [("type", "/start", 2), ("press", "SIGN", 3), ("press", "YES", 4),
                 ("type", "Kai Nakamura", 5), ("type", "G1 1AA", 6), ("press", "YES", 8),
                 ("press", "YES", 9)]
        for how, what, total in steps:
            if how == "type":
                telegram.user_sends(KAI, what, "Kai")
            else:
                button = next(m for m in reversed(telegram.messages_to(KAI))
                              if what in keywords(m))
                telegram.user_presses(KAI, what, button["message_id"])
            wait_until(lambda n=total: len(telegram.messages_to(KAI)) >= n,
                       f"Kai's reply to {what}", *units)
        assert "Your signature is number 3 here" in telegram.messages_to(KAI)[6]["text"]

        # The announcement: Twilio refuses Omar (he unsubscribed at Twilio: 21610).
        twilio.error_for(OMAR, 400, 21610)
        announce = subprocess.run(
            [str(BIN / "petitionbot"), "announce", "--petition", "sirt", "--text",
             ANNOUNCEMENT, "--send"], cwd=state, env=env, capture_output=True, text=True,
            timeout=120)
        assert announce.returncode == 0, announce.stderr
        assert "queued for 3 recipient(s)" in announce.stdout
        engine = make_engine(production_db)
        sessions = make_sessions(engine)
        try:
            def settled() -> bool:
                with sessions() as session:
                    return session.scalar(select(func.count()).select_from(Delivery).where(
                        Delivery.status.in_(OPEN))) == 0
            wait_until(settled, "the announcement sent", *units)
            with sessions() as session:
                outcome = sorted(tuple(row) for row in session.execute(
                    select(Delivery.channel, Delivery.status)).all())
        finally:
            engine.dispose()
        assert outcome == [("sms", "failed"), ("sms", "sent"), ("telegram", "sent")]
        [delivered] = twilio.sent
        assert delivered["to"] == AMIRA and "PLANETS" in delivered["body"]
        assert any(ANNOUNCEMENT in m["text"] for m in telegram.messages_to(KAI))

        # Twilio's status callback for Amira's message.
        form = {"MessageSid": delivered["sid"], "MessageStatus": "delivered", "To": AMIRA,
                "AccountSid": TWILIO_SID}
        callback = requests.post(
            f"http://127.0.0.1:{port}/twilio/status", data=form, timeout=30,
            headers={"X-Twilio-Signature": sign(form, url=f"{PUBLIC}/twilio/status"), **PROXY})
        assert callback.status_code == 204

        # A graceful restart (systemctl reload): new workers, no request refused.
        assert unit_lines("petitionbot-web.service", "ExecReload") == ["/bin/kill -s HUP $MAINPID"]
        booted = web.output().count("Booting worker")
        web.process.send_signal(signal.SIGHUP)
        wait_until(lambda: web.output().count("Booting worker") >= booted + 2,
                   "new gunicorn workers after SIGHUP", *units)
        assert "You signed" in "\n".join(sms(port, AMIRA, "STATUS"))
        assert healthy(port) == health

        # /metrics: every process's events, whichever gunicorn worker answers.
        samples = scrape(port)
        assert scrape(port) == samples  # whichever gunicorn worker answers: the same totals
        inbound_sms = sum(metric(samples, "petitionbot_inbound_messages_total", channel="sms",
                                 outcome=o) for o in ("replied", "signed"))
        assert inbound_sms == 15
        assert metric(samples, "petitionbot_inbound_messages_total", channel="telegram",
                      outcome="signed") == 1
        assert metric(samples, "petitionbot_signatures_total", channel="sms") == 2
        assert metric(samples, "petitionbot_signatures_total", channel="telegram") == 1
        assert metric(samples, "petitionbot_reply_seconds_count", channel="sms") == 15
        assert metric(samples, "petitionbot_reply_seconds_count", channel="telegram") == 7
        assert metric(samples, "petitionbot_deliveries_total", channel="sms", status="sent") == 1
        assert metric(samples, "petitionbot_deliveries_total", channel="sms",
                      status="failed") == 1
        assert metric(samples, "petitionbot_deliveries_total", channel="telegram",
                      status="sent") == 1
        assert metric(samples, "petitionbot_deliveries_total", channel="sms",
                      status="delivered") == 1
        assert metric(samples, "petitionbot_provider_errors_total", channel="sms",
                      code="21610") == 1
        assert metric(samples, "petitionbot_rate_limit_waits_total", channel="sms",
                      reason="pacing") >= 1
        assert metric(samples, "petitionbot_outbox_depth", channel="sms") == 0
        assert metric(samples, "petitionbot_petition_signatures", petition="sirt",
                      channel="sms") == 2
        assert metric(samples, "petitionbot_database_up") == 1
        outside = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10,
                               headers={"X-Forwarded-For": "203.0.113.7"})
        assert outside.status_code == 401  # through the proxy, without the token
        direct = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert direct.status_code == 200   # Prometheus on the host itself (METRICS_ALLOW)

        # Everything stops cleanly, as `systemctl stop petitionbot.target` would.
        assert poller.stop() == 0, poller.output()[-3000:]
        assert worker.stop() == 0, worker.output()[-3000:]
        assert web.stop() == 0, web.output()[-3000:]

    logged = {unit.unit: unit.output() for unit in units}
    logged["announce"] = announce.stderr
    for unit, text in logged.items():
        assert "Traceback" not in text, f"{unit}:\n{text[-3000:]}"
        for secret in [*NEVER_LOGGED, telegram.token, telegram.token.split(":")[1]]:
            assert secret not in text, f"{unit} logged {secret!r}"
        for line in text.splitlines():
            if line.strip():
                assert line.startswith("{") and line.endswith("}"), f"{unit}: {line!r}"
    web_lines = logged["petitionbot-web.service"]
    assert web_lines.count('"event": "inbound"') == 15
    assert logged["petitionbot-telegram-poll.service"].count('"event": "inbound"') == 7
    assert logged["petitionbot-worker@.service"].count('"event": "send"') == 3
