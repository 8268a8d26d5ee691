"""POST /twilio/messages as Twilio sends it, and the public JSON: supporters sign, stop,
delete, misbehave and retry; bad requests change nothing (DESIGN §5, §6, §8)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.core.gsm import is_gsm7
from bot.infra.config import Abuse, Config
from bot.infra.settings import Settings
from bot.shell.unit_of_work import Transactions
from models import (
    ConsentRecord,
    Conversation,
    Identity,
    InboundMessage,
    Signature,
    Subscription,
    Supporter,
)
from models.db import make_engine, make_sessions
from tests.conftest import PUBLIC_URL
from tests.integration.twilio_helpers import (
    PATH,
    Texter,
    converse,
    identity_of,
    post,
    reaches_review,
    replies,
    sign,
    signs,
    sms_payload,
    step_of,
    whatsapp_payload,
)

AMIRA = "+447700900123"
AMIRA_NATIONAL = "07700 900123"
BEN = "+447700900456"
OVER_BUDGET = ("You have sent us a lot of messages, so we will pause our replies for a few "
               "minutes. STOP and DELETE still work meanwhile.")
PEOPLE_TABLES = (Supporter, Identity, InboundMessage, Conversation, ConsentRecord, Signature,
                 Subscription)


def counts(client: FlaskClient) -> dict[str, object]:
    response = client.get("/api/petitions/sirt")
    assert response.status_code == 200
    result: dict[str, object] = response.get_json()["counts"]
    return result


def external_total(config: Config) -> int:
    return sum(e.count for e in config.petition("sirt").external)


def rows(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def nothing_stored(sessions: sessionmaker[Session]) -> bool:
    return all(rows(sessions, model) == 0 for model in PEOPLE_TABLES)


# Signing ---------------------------------------------------------------------------------

def test_amira_signs_by_sms(client: FlaskClient, sessions: sessionmaker[Session],
                            config: Config) -> None:
    before = external_total(config)
    amira = Texter(client, AMIRA)
    converse(amira, sessions, [
        # she sends       the bot says (in part)                          step after
        ("Hi",            "Hello from PLANETS Cancer Charity",            "menu"),
        ("sign",          "You must be 16 or over",                       "consent"),
        ("1",             "What is your full name?",                      "name"),
        ("Amira Khan",    "Thanks, Amira Khan. What is your UK postcode", "postcode"),
        ("sw1a1aa",       "Name: Amira Khan\nPostcode: SW1A 1AA",         "review"),
        ("YES",           f"Your signature is number 1 here, and {before + 1:,} people have",
                          "updates"),
        ("yes",           "We will send you updates about this campaign here", "signed"),
        ("hello again",   "Welcome back. You signed",                     "signed"),
    ])
    consent_yes, review_yes, updates_yes = amira.sids[2], amira.sids[5], amira.sids[6]

    with sessions() as session:
        signature = session.scalars(select(Signature)).one()
        assert (signature.number, signature.name, signature.postcode, signature.postcode_area,
                signature.nation, signature.channel, signature.country) == (
            1, "Amira Khan", "SW1A 1AA", "SW", "england", "sms", None)
        supporter = session.scalars(select(Supporter)).one()
        assert supporter.phone == AMIRA and signature.supporter_id == supporter.id
        records = session.scalars(select(ConsentRecord).order_by(ConsentRecord.id)).all()
        assert [(r.purpose, r.action, r.text_version, r.channel, r.evidence, r.supporter_id)
                for r in records] == [
            ("sign", "granted", config.privacy.version, "sms", consent_yes, supporter.id),
            ("updates", "granted", config.privacy.version, "sms", updates_yes, supporter.id)]
        assert signature.consent_id == records[0].id
        subscription = session.scalars(select(Subscription)).one()
        assert subscription.consent_id == records[1].id
        assert session.scalar(select(InboundMessage.body).where(
            InboundMessage.provider_id == review_yes)) == "YES"

    assert counts(client) == {
        "total": before + 1, "here": 1,
        "external": [{"source": e.source, "count": e.count}
                     for e in config.petition("sirt").external],
        "by_channel": {"sms": 1, "whatsapp": 0, "telegram": 0}}


def test_every_sms_reply_in_a_signing_is_plain_gsm7(client: FlaskClient) -> None:
    zoe = Texter(client, "+447700900789")
    for reply in (r for said in signs(zoe, "Zoë O’Brien", "EH1 1YZ") for r in said):
        assert is_gsm7(reply), reply


def test_bronwen_signs_by_whatsapp_from_wales(client: FlaskClient,
                                              sessions: sessionmaker[Session],
                                              config: Config) -> None:
    bronwen = Texter(client, "+447700900321", "whatsapp", profile_name="Bronwen")
    converse(bronwen, sessions, [
        ("Helo",            "Hello from PLANETS Cancer Charity",           "menu"),
        ("1",               "Privacy notice: https://",                    "consent"),
        ("Yes",             "What is your full name?",                     "name"),
        ("Bronwen Pryce",   "What is your UK postcode?",                   "postcode"),
        ("CF10 1AA",        "Postcode: CF10 1AA",                          "review"),
        ("1",               "Your signature is number 1 here",             "updates"),
        ("2",               "OK, no updates. Thank you for signing!",      "signed"),
    ])
    with sessions() as session:
        signature = session.scalars(select(Signature)).one()
        assert (signature.name, signature.postcode, signature.nation, signature.channel) == (
            "Bronwen Pryce", "CF10 1AA", "wales", "whatsapp")
        identity = session.scalars(select(Identity)).one()
        assert (identity.channel, identity.address) == ("whatsapp", "+447700900321")
        records = session.scalars(select(ConsentRecord)).all()
        assert [(r.purpose, r.channel, r.evidence, r.text_version) for r in records] == [
            ("sign", "whatsapp", bronwen.sids[2], config.privacy.version)]
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    assert counts(client)["by_channel"] == {"sms": 0, "whatsapp": 1, "telegram": 0}


def test_amira_signs_by_sms_then_whatsapp_is_told_she_already_signed(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    by_sms = Texter(client, AMIRA_NATIONAL)            # her network writes it nationally
    signs(by_sms, "Amira Khan", "M1 1AE")
    on_whatsapp = Texter(client, AMIRA, "whatsapp", profile_name="Amira")
    converse(on_whatsapp, sessions, [
        ("Hi",    "Welcome back. You signed",                                  "signed"),
        ("SIGN",  "You have already signed this petition (signature no. 1 here)", "signed"),
    ])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
        assert session.scalars(select(Supporter.phone)).all() == [AMIRA]
        assert sorted(session.execute(select(Identity.channel, Identity.address)).all()) == [
            ("sms", AMIRA), ("whatsapp", AMIRA)]
    assert counts(client)["here"] == 1


# Requests that are not Twilio's ----------------------------------------------------------

@pytest.mark.parametrize("forgery", ["another token", "body changed after signing",
                                     "signed for another URL", "not base64 at all"])
def test_a_forged_request_is_refused_and_stores_nothing(
        client: FlaskClient, sessions: sessionmaker[Session], forgery: str) -> None:
    params = sms_payload(AMIRA, "YES")
    signature = {
        "another token": sign(params, token="not-our-token"),
        "body changed after signing": sign({**params, "Body": "NO"}),
        "signed for another URL": sign(params, url="http://127.0.0.1:5000" + PATH),
        "not base64 at all": "\u00e9" * 28,  # a header is Latin-1 text: é, not an ASCII byte
    }[forgery]
    response = post(client, params, signature=signature)
    assert response.status_code == 403
    assert b"<Message>" not in response.get_data()
    assert nothing_stored(sessions)


def test_a_request_without_a_signature_is_refused(client: FlaskClient,
                                                  sessions: sessionmaker[Session]) -> None:
    response = client.post(PATH, data=sms_payload(AMIRA, "Hi"), base_url=PUBLIC_URL)
    assert response.status_code == 403
    assert nothing_stored(sessions)


@pytest.mark.parametrize("token", ["test-auth-token-0123456789abcdef", ""])
def test_without_twilio_credentials_every_request_is_refused(
        settings: Settings, sessions: sessionmaker[Session], token: str) -> None:
    from webhooks import create_app

    app = create_app(dataclasses.replace(settings, twilio_auth_token=""))
    try:
        params = sms_payload(AMIRA, "Hi")
        response = post(app.test_client(), params, signature=sign(params, token=token))
        assert response.status_code == 403
    finally:
        app.extensions["petitionbot"].engine.dispose()
    assert nothing_stored(sessions)


def test_a_json_body_is_a_bad_request(client: FlaskClient,
                                      sessions: sessionmaker[Session]) -> None:
    params = sms_payload(AMIRA, "Hi")
    response = client.post(PATH, data=json.dumps(params), content_type="application/json",
                           headers={"X-Twilio-Signature": sign(params)}, base_url=PUBLIC_URL)
    assert response.status_code == 400
    assert nothing_stored(sessions)


@pytest.mark.parametrize("broken", [
    {"MessageSid": None}, {"From": None}, {"MessageSid": "SM-not-a-sid"},
    {"From": "whatsapp:hello"}, {"From": ""},
], ids=["no MessageSid", "no From", "bad MessageSid", "From not a number", "empty From"])
def test_a_form_missing_what_twilio_always_sends_is_a_bad_request(
        client: FlaskClient, sessions: sessionmaker[Session],
        broken: dict[str, str | None]) -> None:
    params = sms_payload(AMIRA, "Hi")
    for key, value in broken.items():
        if value is None:
            del params[key]
        else:
            params[key] = value
    response = post(client, params)  # correctly signed: refused for what it says
    assert response.status_code == 400
    assert nothing_stored(sessions)


def test_a_body_over_64_kib_is_too_large(client: FlaskClient,
                                         sessions: sessionmaker[Session]) -> None:
    response = post(client, sms_payload(AMIRA, "x" * (65 * 1024)))
    assert response.status_code == 413
    assert nothing_stored(sessions)


# Retries ----------------------------------------------------------------------------------

def test_twilio_retries_amiras_yes_and_she_signs_once(client: FlaskClient,
                                                      sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA)
    reaches_review(amira, "Amira Khan", "SW1A 1AA")
    yes = amira.payload("YES")
    first = replies(post(client, yes))
    assert "Your signature is number 1 here" in first[0]

    # Twilio retries when its request timed out, so the answer never reached her: the
    # retry gets the same answer again, and changes nothing.
    replay = post(client, yes)
    assert replay.status_code == 200
    assert replies(replay) == first
    assert step_of(sessions, amira) == "updates"

    assert amira.says("NO")
    assert replies(post(client, yes)) == first  # a late copy does not wind her back either
    assert step_of(sessions, amira) == "signed"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.provider_id == yes["MessageSid"])) == 1
    assert counts(client)["here"] == 1


def test_a_replayed_consent_records_consent_once(client: FlaskClient,
                                                 sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA, "whatsapp")
    amira.says("Hi")
    amira.says("SIGN")
    yes = amira.payload("YES")
    for _ in range(3):
        assert post(client, yes).status_code == 200
    assert rows(sessions, ConsentRecord) == 1
    assert step_of(sessions, amira) == "name"


# STOP and START ---------------------------------------------------------------------------

def test_callum_says_stop_halfway_and_hears_nothing_until_start(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    callum = Texter(client, "+447700900555")
    converse(callum, sessions, [
        ("Hi",           "Hello from PLANETS",                                   "menu"),
        ("SIGN",         "Reply 1 YES or 2 NO",                                  "consent"),
        ("YES",          "What is your full name?",                              "name"),
    ])
    assert callum.says("STOP") == [
        "You will get no more messages from PLANETS here. Reply START to resume."]
    identity = identity_of(sessions, callum)
    assert identity is not None and identity.opted_out_at is not None
    # What he had given for the signature is forgotten with the STOP.
    converse(callum, sessions, [
        ("Callum Reid",  "", "new"),
        ("HELP",         "", "new"),
        ("STATUS",       "", "new"),
        ("stop",         "", "new"),
        ("SIGN",         "", "new"),
    ])
    said = callum.says("START")
    assert len(said) == 1 and said[0].startswith("OK, we will answer your messages here again.")
    assert "Hello from PLANETS" in said[0]
    identity = identity_of(sessions, callum)
    assert identity is not None and identity.opted_out_at is None
    assert rows(sessions, Signature) == 0


def test_twilio_opt_out_type_stop_is_honoured_whatever_the_words(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    dev = Texter(client, "+447700900666")
    signs(dev, "Dev Patel", "B1 1AA", updates="YES")
    assert rows(sessions, Subscription) == 1

    said = dev.says("Arrêt", OptOutType="STOP")  # a keyword set up in Twilio's console
    assert said == ["You will get no more messages from PLANETS here. Reply START to resume."]
    identity = identity_of(sessions, dev)
    assert identity is not None and identity.opted_out_at is not None
    assert rows(sessions, Subscription) == 0
    with sessions() as session:
        withdrawn = session.scalars(select(ConsentRecord).where(
            ConsentRecord.action == "withdrawn")).one()
        assert (withdrawn.purpose, withdrawn.evidence) == ("updates", dev.sids[-1])
    assert dev.says("Hello?") == []

    said = dev.says("Reprendre", OptOutType="START")
    assert said[0].startswith("OK, we will answer your messages here again.")
    identity = identity_of(sessions, dev)
    assert identity is not None and identity.opted_out_at is None
    assert rows(sessions, Subscription) == 0  # updates stay off until asked for again


# DELETE -----------------------------------------------------------------------------------

def test_amira_deletes_her_data_and_her_signature_is_withdrawn(
        client: FlaskClient, sessions: sessionmaker[Session], config: Config) -> None:
    signs(Texter(client, BEN), "Ben Okoro", "LS1 1UR")
    amira = Texter(client, AMIRA)
    signs(amira, "Amira Khan", "SW1A 1AA", updates="YES")
    assert counts(client)["here"] == 2
    with sessions() as session:
        supporter_id = session.scalar(select(Supporter.id).where(Supporter.phone == AMIRA))
        identity_ids = session.scalars(select(Identity.id).where(
            Identity.supporter_id == supporter_id)).all()

    assert "Shall we delete them?\nReply 1 YES or 2 NO" in amira.says("DELETE")[0]
    assert amira.says("YES") == [
        "Done: your personal data has been erased and any signature withdrawn. "
        "Thank you for your support."]

    with sessions() as session:
        def left(model: type, *where: object) -> int:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

        assert left(Supporter, Supporter.phone == AMIRA) == 0
        assert left(Supporter, Supporter.id == supporter_id) == 0
        assert left(Identity, Identity.address == AMIRA) == 0
        assert left(Signature, Signature.supporter_id == supporter_id) == 0
        assert left(ConsentRecord, ConsentRecord.supporter_id == supporter_id) == 0
        assert left(Conversation, Conversation.identity_id.in_(identity_ids)) == 0
        assert left(Subscription, Subscription.identity_id.in_(identity_ids)) == 0
        hers = session.execute(select(InboundMessage.body, InboundMessage.identity_id).where(
            InboundMessage.provider_id.in_(amira.sids))).all()
        assert len(hers) == len(amira.sids)            # the keys stay: replays stay no-ops
        assert set(hers) == {(None, None)}
        assert session.scalars(select(Signature.name)).all() == ["Ben Okoro"]
        assert left(InboundMessage, InboundMessage.body.is_not(None)) == 7  # Ben's
    assert counts(client) == {
        "total": external_total(config) + 1, "here": 1,
        "external": [{"source": e.source, "count": e.count}
                     for e in config.petition("sirt").external],
        "by_channel": {"sms": 1, "whatsapp": 0, "telegram": 0}}


def test_amira_stopped_whatsapp_then_deleted_and_stop_is_still_remembered(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    by_sms = Texter(client, AMIRA)
    on_whatsapp = Texter(client, AMIRA, "whatsapp")
    signs(by_sms, "Amira Khan", "SW1A 1AA")
    assert on_whatsapp.says("Hi")
    assert on_whatsapp.says("STOP")
    by_sms.says("DELETE")
    assert "erased" in by_sms.says("YES")[0]

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 0
        assert session.scalar(select(func.count()).select_from(ConsentRecord)) == 0
        suppression = session.scalars(select(Identity)).one()
        assert (suppression.channel, suppression.address, suppression.supporter_id) == (
            "whatsapp", AMIRA, None)
        assert suppression.opted_out_at is not None
        assert suppression.last_inbound_at is None
    assert counts(client)["here"] == 0

    assert on_whatsapp.says("Hello?") == []
    assert on_whatsapp.says("SIGN") == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 0


# Input a supporter can get wrong ----------------------------------------------------------

def conversation_row(sessions: sessionmaker[Session], texter: Texter) -> tuple[object, ...]:
    identity = identity_of(sessions, texter)
    assert identity is not None
    with sessions() as session:
        conv = session.get(Conversation, identity.id)
        assert conv is not None
        return conv.step, conv.data, conv.version, conv.updated_at


def test_ffion_sends_a_5000_character_name_and_an_emoji_postcode(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    ffion = Texter(client, "+447700900777", "whatsapp")
    for body in ("Hi", "SIGN", "YES"):
        ffion.says(body)
    before = conversation_row(sessions, ffion)
    assert ffion.says(("Ffion Hughes " * 400)[:5000]) == [
        "Please send your full name, e.g. Sam Jones: letters only, up to 80 characters."]
    assert conversation_row(sessions, ffion) == before

    assert "What is your UK postcode?" in ffion.says("Ffion Hughes")[0]
    before = conversation_row(sessions, ffion)
    said = ffion.says("🏴󠁧󠁢󠁷󠁬󠁳󠁿🐉🏠")
    assert len(said) == 1 and "does not look like a full UK postcode" in said[0]
    assert conversation_row(sessions, ffion) == before
    assert rows(sessions, Signature) == 0
    with sessions() as session:
        stored = session.scalars(select(InboundMessage.body)).all()
        assert max(len(body or "") for body in stored) <= 1600


def test_an_emoji_postcode_by_sms_gets_a_plain_text_answer(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    gwen = Texter(client, "+447700900778")
    for body in ("Hi", "SIGN", "YES", "Gwen Evans"):
        gwen.says(body)
    said = gwen.says("📮📮📮")
    assert len(said) == 1 and is_gsm7(said[0]) and "UK postcode" in said[0]
    assert step_of(sessions, gwen) == "postcode"


# Public JSON and health -----------------------------------------------------------------

def test_the_petition_json_has_exactly_the_documented_shape(client: FlaskClient,
                                                            config: Config) -> None:
    signs(Texter(client, AMIRA, "whatsapp"), "Amira Khan", "SW1A 1AA")
    response = client.get("/api/petitions/sirt")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    petition = config.petition("sirt")
    assert set(body) == {"slug", "title", "goal", "counts"}
    assert set(body["counts"]) == {"total", "here", "external", "by_channel"}
    assert body == {
        "slug": "sirt", "title": petition.title, "goal": petition.goal,
        "counts": {
            "total": 1 + external_total(config), "here": 1,
            "external": [{"source": e.source, "count": e.count} for e in petition.external],
            "by_channel": {"sms": 0, "whatsapp": 1, "telegram": 0},
        },
    }
    assert all(set(e) == {"source", "count"} for e in body["counts"]["external"])


def test_an_unknown_petition_is_404(client: FlaskClient) -> None:
    assert client.get("/api/petitions/no-such-thing").status_code == 404


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "not configured"}


# When we fail -------------------------------------------------------------------------

def test_while_the_database_is_unreachable_twilio_is_told_to_retry(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = app.extensions["petitionbot"]
    down = make_engine("postgresql+psycopg://127.0.0.1:1/x", pool_timeout=5)
    monkeypatch.setattr(runtime, "engine", down)
    monkeypatch.setattr(runtime, "sessions", make_sessions(down))
    monkeypatch.setattr(runtime.service, "sessions", make_sessions(down))
    monkeypatch.setattr(runtime.service, "transactions", Transactions(down))
    hello = sms_payload(AMIRA, "Hi")
    try:
        response = post(client, hello)
        assert response.status_code == 503
        assert b"<Message" not in response.get_data()
        assert client.get("/healthz").status_code == 503
    finally:
        monkeypatch.undo()
        down.dispose()

    assert nothing_stored(sessions)
    assert "Hello from PLANETS" in replies(post(client, hello))[0]  # Twilio's retry


def test_a_database_error_halfway_through_commits_nothing(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session],
        engine: Engine) -> None:
    hello = whatsapp_payload(AMIRA, "Hi", profile_name="Amira")
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE signatures RENAME TO signatures_gone"))
    try:
        response = post(client, hello)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE signatures_gone RENAME TO signatures"))
    assert response.status_code == 503
    assert b"<Message" not in response.get_data()
    assert nothing_stored(sessions)
    assert "Hello from PLANETS" in replies(post(client, hello))[0]  # the retry is not a replay


# The reply budget ---------------------------------------------------------------------------

def test_gethin_floods_the_bot_and_is_paused_while_hana_is_not(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.extensions["petitionbot"].service, "abuse", Abuse(3, 600))
    gethin = Texter(client, "+447700900888")
    hana = Texter(client, "+447700900999", "whatsapp")
    for body in ("Hi", "MORE", "MORE"):
        assert gethin.says(body)
    assert gethin.says("MORE") == [OVER_BUDGET]
    assert gethin.says("MORE") == []
    assert "Hello from PLANETS" in hana.says("Hi")[0]
    assert gethin.says("INFO") == []
    assert hana.says("SIGN")
    assert step_of(sessions, hana) == "consent"

    # Over budget, STOP still takes effect (DESIGN §8), unanswered: the notice was said.
    assert gethin.says("STOP") == []
    assert gethin.says("MORE") == []
    identity = identity_of(sessions, gethin)
    assert identity is not None and identity.opted_out_at is not None


def test_the_over_budget_notice_is_sent_once_per_window(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.extensions["petitionbot"].service, "abuse", Abuse(1, 600))
    iwan = Texter(client, "+447700900111", "whatsapp")
    said = [iwan.says("Hi") for _ in range(6)]
    notice = re.compile("pause our replies")
    assert [len(s) for s in said] == [1, 1, 0, 0, 0, 0]
    assert sum(bool(notice.search(s[0])) for s in said if s) == 1


def test_jac_said_stop_and_keeps_writing_but_hears_nothing_until_start(
        app: Flask, client: FlaskClient, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.extensions["petitionbot"].service, "abuse", Abuse(3, 600))
    jac = Texter(client, "+447700900222")
    assert jac.says("Hi")
    assert jac.says("STOP") == [
        "You will get no more messages from PLANETS here. Reply START to resume."]
    for body in ("why?", "hello", "anyone there", "HELP", "SIGN", "ok"):
        assert jac.says(body) == [], body  # not even the over-budget notice
    said = jac.says("START")
    assert said[0].startswith("OK, we will answer your messages here again.")
    identity = identity_of(sessions, jac)
    assert identity is not None and identity.opted_out_at is None


def test_a_retried_delete_confirmation_does_not_bring_amira_back(
        client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    amira = Texter(client, AMIRA, "whatsapp")
    signs(amira, "Amira Khan", "SW1A 1AA")
    amira.says("DELETE")
    confirm = amira.payload("YES")
    assert "erased" in replies(post(client, confirm))[0]

    # Twilio retries the same MessageSid (its answer was lost): the same answer, no effect
    assert "erased" in replies(post(client, confirm))[0]
    assert replies(post(client, amira.payload("Hi", sid=amira.sids[0]))) == []  # and an old one
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Supporter)) == 0
        assert session.scalar(select(func.count()).select_from(Identity)) == 0
        assert session.scalar(select(func.count()).select_from(Conversation)) == 0
