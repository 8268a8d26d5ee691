"""config.toml: the shipped file loads; a broken one is refused with every mistake named
by its dotted path; paths inside it are relative to its own folder."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from bot.infra.config import ConfigError, load_config
from tests.unit.transcript import CONFIG_PATH

VALID = """
default_petition = "sirt"

[organisation]
name = "PLANETS Cancer Charity"
short_name = "PLANETS"
privacy_url = "https://example.org/privacy"

[privacy]
version = "v1"
consent = "You must be {minimum_age} or over. Privacy notice: {privacy_url}"
updates = "Would you like updates?"

[broadcast]
timezone = "Europe/London"
quiet_hours = "21:00-08:00"

[[petitions]]
slug = "sirt"
title = "Fund SIRT"
summary = "Ask NHS England to fund SIRT."
issue_file = "content/sirt.md"
decision_makers = ["NHS England"]
organiser = "PLANETS Cancer Charity"
created = 2025-03-17
"""

BROKEN = """
default_petition = "sirt"
colour = "blue"

[organisation]
short_name = "PLANETS"
privacy_url = "https://example.org/privacy"
motto = "Together"

[privacy]
version = "v1"
consent = "You must be {minimum_age} or over. Privacy notice: {privacy_url}"
updates = "Would you like updates?"

[broadcast]
timezone = "Europe/London"
quiet_hours = "9pm-8am"

[[petitions]]
slug = "sirt"
title = "Fund SIRT"
summary = "Ask NHS England to fund SIRT."
issue = "The issue."
decision_makers = ["NHS England"]
organiser = "PLANETS Cancer Charity"
created = 2025-03-17

[[petitions]]
slug = "sirt"
code = "SIRT2"
title = "Fund SIRT again"
summary = "A copy."
issue = "The issue."
decision_makers = ["NHS England"]
organiser = "PLANETS Cancer Charity"
created = 2025-03-18

[texts]
help = "Reply SIGN. Questions: {phone_number}"
ask_name = "What’s your full name?"
greetng = "Hi there"
"""

DOTTED_PATH = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")


def write(folder: Path, text: str, issue: str | None = "The issue, from a file.") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    if issue is not None:
        (folder / "content").mkdir(exist_ok=True)
        (folder / "content" / "sirt.md").write_text(issue, encoding="utf-8")
    return path


def test_the_shipped_config_serves_the_sirt_petition() -> None:
    config = load_config(CONFIG_PATH)
    sirt = config.petition("sirt")
    assert config.default_petition == "sirt" and sirt.code == "SIRT"
    assert [(e.source, e.count) for e in sirt.external] == [("Change.org", 49257)]
    assert sirt.decision_makers == ("NHS England",)
    assert sirt.created == dt.date(2025, 3, 17)
    assert sirt.issue.startswith("Hundreds of cancer patients")
    assert config.organisation.name == "PLANETS Cancer Charity"
    assert config.broadcast.quiet_hours == (dt.time(21, 0), dt.time(8, 0))
    assert config.broadcast.rates == {"telegram": 25, "sms": 10, "whatsapp": 20}
    assert config.privacy.minimum_age == 16 and config.privacy.version
    assert config.petition_by_code("sirt") == sirt


def test_a_config_with_many_mistakes_is_refused_with_every_one_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BROKEN))
    errors = caught.value.errors
    expected = [
        ("colour: ", "unknown key"),
        ("organisation.motto: ", "unknown key"),
        ("organisation.name: ", "missing"),
        ("broadcast.quiet_hours: ", "21:00-08:00"),
        ("texts.help: ", "{phone_number}"),
        ("texts.ask_name: ", "plain characters"),
        ("texts.greetng: ", "unknown text"),
        ("petitions", "'sirt' is used twice"),
    ]
    for path, fragment in expected:
        assert any(e.startswith(path) and fragment in e for e in errors), (path, errors)
    for error in errors:
        assert DOTTED_PATH.match(error), error
        assert error in str(caught.value)
    assert str(tmp_path / "config.toml") in str(caught.value)


def test_a_text_override_may_use_only_its_own_fields(tmp_path: Path) -> None:
    # {name} is a real field, but not one the help text is given.
    path = write(tmp_path, VALID + '\n[texts]\nhelp = "Hello {name}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [e for e in caught.value.errors if e.startswith("texts.help: ")]


def test_a_curly_quote_in_the_consent_text_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("You must be", "You’re to be"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(e.startswith("privacy.consent: ") for e in caught.value.errors)


def test_a_good_text_override_is_kept(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID + '\n[texts]\nask_name = "Your name, please?"\n'))
    assert config.texts == {"ask_name": "Your name, please?"}


def test_issue_file_is_read_from_the_configs_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "deploy", VALID, issue="Read from beside the config.")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "content").mkdir()
    (elsewhere / "content" / "sirt.md").write_text("The wrong file.", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    assert load_config(path).petition("sirt").issue == "Read from beside the config."
    relative = Path("..") / "deploy" / "config.toml"
    assert load_config(relative).petition("sirt").issue == "Read from beside the config."


def test_a_missing_issue_file_is_named_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, VALID, issue=None))
    assert any(e.startswith("petitions[0].issue_file: ") and "content/sirt.md" in e
               for e in caught.value.errors), caught.value.errors


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("this is = = not toml", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_processes_starting_together_share_one_generated_secret_key(tmp_path: Path) -> None:
    """Several web processes start at once on a first run: one key, never an empty one."""
    from concurrent.futures import ThreadPoolExecutor

    from bot.infra.settings import local_secret_key

    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = set(pool.map(lambda _: local_secret_key(tmp_path / "instance"), range(32)))
    assert len(keys) == 1 and len(keys.pop()) > 40
    assert [p.name for p in (tmp_path / "instance").iterdir()] == ["secret_key"]
