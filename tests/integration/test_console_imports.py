"""The console's Imports page (admins): check a CSV file (a dry run, every bad row by its
line), then confirm without choosing the file again; the checked file travels in the page,
sealed, so what is imported is exactly what was checked."""

from __future__ import annotations

import html
import io
import re

import pytest
from flask import Flask
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from models import ImportBatch, Signature, Suppression
from tests.integration.console_helpers import Browser, add_people
from tests.integration.test_imports import PAPER, changed, csv_of, snapshot

HIDDEN = re.compile(r'<input id="(\w+)" name="\w+" type="hidden" value="([^"]*)"')


@pytest.fixture
def admin(app: Flask, sessions: sessionmaker[Session]) -> Browser:
    add_people(sessions)
    browser = Browser(app.test_client())
    browser.login("admin@planets.example")
    return browser


def check(admin: Browser, data: bytes, kind: str, name: str = "list.csv",
          **fields: str) -> tuple[int, str]:
    response = admin.post("/staff/imports", {
        "step": "check", "kind": kind, "petition": "sirt", "source": "",
        "file": (io.BytesIO(data), name), **fields})
    return response.status_code, response.get_data(as_text=True)


def confirmation(page: str) -> dict[str, str]:
    """The confirm form's hidden fields, as the browser would post them back."""
    form = page[page.index('id="confirm"'):]
    return {name: html.unescape(value) for name, value in HIDDEN.findall(form)
            if name != "csrf_token"}


def past(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(ImportBatch)) or 0


def test_an_admin_checks_a_suppression_list_then_imports_it(
        admin: Browser, sessions: sessionmaker[Session], engine: Engine) -> None:
    assert "Nothing has been imported yet." in admin.get("/staff/imports").get_data(
        as_text=True)
    before = snapshot(engine, skip=("audit_log", "staff_sessions", "rate_windows"))
    status, page = check(admin, csv_of("Mobile", "07700 900123", "07700 900456"), "suppressions",
                         "fps.csv", source="Fundraising Preference Service")
    assert status == 200, page
    assert "Check of fps.csv: nothing is imported yet" in page
    assert "Numbers it would add to the suppression list</th><td class=\"num\">2<" in page
    assert not changed(before, snapshot(engine, skip=("audit_log", "staff_sessions",
                                                      "rate_windows")))
    done = admin.post("/staff/imports", {"step": "confirm", **confirmation(page)})
    assert done.status_code == 303
    listing = admin.get("/staff/imports").get_data(as_text=True)
    assert "Imported fps.csv: 2 number(s) added to the suppression list" in listing
    assert "Suppression list</td>" in listing and "fps.csv" in listing
    with sessions() as session:
        assert set(session.execute(select(Suppression.phone, Suppression.source))) == {
            ("+447700900123", "Fundraising Preference Service"),
            ("+447700900456", "Fundraising Preference Service")}
    again = admin.post("/staff/imports", {"step": "confirm", **confirmation(page)})
    assert again.status_code == 400 and "imported before" in again.get_data(as_text=True)
    assert past(sessions) == 1


def test_paper_signatures_with_bad_rows_are_listed_by_line_and_cannot_be_confirmed(
        admin: Browser, sessions: sessionmaker[Session]) -> None:
    status, page = check(admin, csv_of(*PAPER, "Bob Smith,NOWHERE,2026-01-01,Leeds march"),
                         "signatures")
    assert status == 400
    assert "1 bad row in list.csv: nothing was imported" in page
    assert '<td class="num">5</td><td>postcode: not a UK postcode</td>' in page
    assert 'id="confirm"' not in page
    status, page = check(admin, csv_of(*PAPER), "signatures", "march.csv")
    assert status == 200 and "Paper signatures it would add to sirt" in page
    assert admin.post("/staff/imports", {"step": "confirm", **confirmation(page)}
                      ).status_code == 303
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature).where(
            Signature.channel == "paper")) == 3


@pytest.mark.parametrize("tamper", ["kind", "content", "sha256", "petition"])
def test_a_confirmation_changed_since_the_check_imports_nothing(
        tamper: str, admin: Browser, sessions: sessionmaker[Session]) -> None:
    status, page = check(admin, csv_of("phone", "07700 900123"), "suppressions")
    assert status == 200
    fields = confirmation(page)
    fields[tamper] = {"kind": "signatures", "petition": "sirt",
                      "content": fields["content"][:-8] + "AAAAAAA=",
                      "sha256": "0" * 64}[tamper]
    response = admin.post("/staff/imports", {"step": "confirm", **fields})
    assert response.status_code == 303
    assert "check it again" in admin.get("/staff/imports").get_data(as_text=True)
    assert past(sessions) == 0


def test_a_file_that_is_no_csv_is_refused_with_the_reason(admin: Browser,
                                                          sessions: sessionmaker[Session]) -> None:
    status, page = check(admin, "phone\n07700900123\n".encode("utf-16"), "suppressions")
    assert status == 400 and "not UTF-8 text" in page and 'id="confirm"' not in page
    status, page = check(admin, b"", "suppressions")
    assert status == 400
    assert past(sessions) == 0


def test_a_file_larger_than_64_kib_is_checked_and_imported(
        admin: Browser, sessions: sessionmaker[Session]) -> None:
    numbers = csv_of("phone", *(f"+4477009{n:05d}" for n in range(6000)))
    assert len(numbers) > 64 * 1024
    status, page = check(admin, numbers, "suppressions")
    assert status == 200 and "6,000" in page
    assert admin.post("/staff/imports", {"step": "confirm", **confirmation(page)}
                      ).status_code == 303
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 6000
