"""The fake Twilio REST server, driven by twilio-python's own client (requests)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, num_segments

AMIRA = "+447700900123"
BEN_WA = "whatsapp:+447700900456"
OUR_SMS = "+447700900000"
OUR_WA = "whatsapp:+447700900000"
CALLBACK = "https://petition.example.org/twilio/status"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


def client_for(fake: FakeTwilio, sid: str = ACCOUNT_SID, token: str = AUTH_TOKEN,
               timeout: float = 5) -> Client:
    client = Client(sid, token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = fake.base_url
    return client


def refusal(fake: FakeTwilio, **params: str) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        client_for(fake).messages.create(**params)
    return caught.value


def test_an_sms_is_created_as_twilio_returns_it(fake: FakeTwilio) -> None:
    message = client_for(fake).messages.create(to=AMIRA, from_=OUR_SMS, body="Hello Amira",
                                               status_callback=CALLBACK)
    assert message.sid.startswith("SM") and len(message.sid) == 34
    int(message.sid[2:], 16)
    assert (message.status, message.to, message.from_, message.body, message.num_segments,
            message.direction, message.account_sid, message.api_version) == (
        "queued", AMIRA, OUR_SMS, "Hello Amira", "1", "outbound-api", ACCOUNT_SID,
        "2010-04-01")
    assert isinstance(message.date_created, dt.datetime)  # RFC 2822, parsed by the client
    assert message.date_created.tzinfo is not None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"
    [request] = fake.requests
    assert (request["method"], request["path"], request["status"], request["to"],
            request["from"], request["body"], request["status_callback"], request["sid"],
            request["content_sid"], request["messaging_service_sid"]) == (
        "POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", 201, AMIRA, OUR_SMS,
        "Hello Amira", CALLBACK, message.sid, None, None)
    assert request["content_type"].startswith("application/x-www-form-urlencoded")
    assert fake.sent == [request] and fake.message(message.sid)["to"] == AMIRA


def test_a_messaging_service_message_is_accepted(fake: FakeTwilio) -> None:
    service = "MG" + "1" * 32
    message = client_for(fake).messages.create(to=AMIRA, messaging_service_sid=service,
                                               body="Hi")
    assert (message.status, message.messaging_service_sid, message.from_) == (
        "accepted", service, None)
    assert fake.requests[0]["messaging_service_sid"] == service


def test_segments_follow_gsm7_and_ucs2(fake: FakeTwilio) -> None:
    client = client_for(fake)
    assert client.messages.create(to=AMIRA, from_=OUR_SMS, body="a" * 160).num_segments == "1"
    assert client.messages.create(to=AMIRA, from_=OUR_SMS, body="a" * 161).num_segments == "2"
    assert client.messages.create(to=AMIRA, from_=OUR_SMS, body="’" * 71).num_segments == "2"
    assert (num_segments("a" * 306), num_segments("a" * 307), num_segments("€" * 80),
            num_segments("é" * 160), num_segments("🎉" * 35), num_segments("🎉" * 36)) == (
        2, 3, 1, 1, 1, 2)


def test_wrong_credentials_or_another_account_are_401(fake: FakeTwilio) -> None:
    for sid, token in ((ACCOUNT_SID, "wrong-token"), ("AC" + "9" * 32, AUTH_TOKEN)):
        with pytest.raises(TwilioRestException) as caught:
            client_for(fake, sid, token).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi")
        assert (caught.value.status, caught.value.code) == (401, 20003)
    # the right credentials, but another account's path
    other = f"{fake.base_url}/2010-04-01/Accounts/AC{'9' * 32}/Messages.json"
    auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    request = urllib.request.Request(other, data=b"To=%2B447700900123&From=x&Body=Hi",
                                     headers={"Authorization": f"Basic {auth}"})
    with pytest.raises(urllib.error.HTTPError) as caught_http:
        urllib.request.urlopen(request, timeout=5)
    assert caught_http.value.code == 401
    assert json.loads(caught_http.value.read())["code"] == 20003
    assert fake.sent == []


def test_unknown_paths_are_404(fake: FakeTwilio) -> None:
    auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    request = urllib.request.Request(f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/"
                                     "Calls.json", data=b"To=x",
                                     headers={"Authorization": f"Basic {auth}"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 404


def test_missing_or_bad_parameters_are_refused_as_twilio_does(fake: FakeTwilio) -> None:
    cases = [
        ({"from_": OUR_SMS, "body": "Hi", "to": ""}, 21604),
        ({"to": AMIRA, "body": "Hi"}, 21603),
        ({"to": AMIRA, "from_": OUR_SMS}, 21602),
        ({"to": AMIRA, "from_": OUR_SMS, "body": "a" * 1601}, 21617),
        ({"to": AMIRA, "from_": OUR_WA, "body": "Hi"}, 21910),
        ({"to": BEN_WA, "from_": OUR_WA, "content_sid": "HX" + "0" * 32,
          "content_variables": "not json"}, 21656),
        ({"to": "07700 900123", "from_": OUR_SMS, "body": "Hi"}, 21211),
    ]
    for params, code in cases:
        error = refusal(fake, **params)
        assert (error.status, error.code) == (400, code), params
    assert fake.sent == [] and len(fake.requests) == len(cases)


def test_an_injected_error_reaches_the_client_as_twilio_rest_exception(
        fake: FakeTwilio) -> None:
    fake.error_for(AMIRA, 400, 21610)
    error = refusal(fake, to=AMIRA, from_=OUR_SMS, body="Hi")
    assert isinstance(error, TwilioException)
    assert (error.status, error.code) == (400, 21610)
    assert "unsubscribed recipient" in error.msg
    assert error.details is None or isinstance(error.details, dict)
    # one refusal only (times=1): the next send is accepted; other numbers were never affected
    client_for(fake).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi again")
    assert [(r["to"], r["status"], r["error"]) for r in fake.requests] == [
        (AMIRA, 400, 21610), (AMIRA, 201, None)]


def test_injected_errors_take_turns_and_count_down(fake: FakeTwilio) -> None:
    fake.error_for(AMIRA, 429, 20429, times=2)
    fake.error_for(AMIRA, 500, 20500, "Internal Server Error")
    codes = []
    for _ in range(4):
        try:
            client_for(fake).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi")
            codes.append(201)
        except TwilioRestException as error:
            codes.append((error.status, error.code))
    assert codes == [(429, 20429), (429, 20429), (500, 20500), 201]


def test_63016_refuses_free_form_whatsapp_but_not_a_template(fake: FakeTwilio) -> None:
    fake.error_for(BEN_WA, 400, 63016)
    client = client_for(fake)
    template = client.messages.create(to=BEN_WA, from_=OUR_WA, content_sid="HX" + "a" * 32,
                                      content_variables=json.dumps({"1": "Ben"}))
    assert template.status == "queued" and "Ben" in template.body
    error = refusal(fake, to=BEN_WA, from_=OUR_WA, body="Free-form")
    assert (error.status, error.code) == (400, 63016)
    assert "outside the allowed window" in error.msg
    client.messages.create(to=BEN_WA, from_=OUR_WA, body="Free-form again")  # used up
    first = fake.requests[0]
    assert (first["content_sid"], json.loads(first["content_variables"]), first["body"]) == (
        "HX" + "a" * 32, {"1": "Ben"}, None)


def test_a_hung_request_times_the_client_out_but_was_accepted(fake: FakeTwilio) -> None:
    fake.hang_for(AMIRA, 10)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client_for(fake, timeout=0.3).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi")
    assert [(r["to"], r["status"]) for r in fake.sent] == [(AMIRA, 201)]
    # only that one: the next request is answered at once
    client_for(fake, timeout=5).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi")
    assert len(fake.sent_to(AMIRA)) == 2


def test_wait_for_returns_the_value_or_fails_with_what_happened(fake: FakeTwilio) -> None:
    client_for(fake).messages.create(to=AMIRA, from_=OUR_SMS, body="Hello")
    assert fake.wait_for(lambda f: f.sent_to(AMIRA), timeout=1)[0]["body"] == "Hello"
    with pytest.raises(AssertionError, match="nobody else"):
        fake.wait_for(lambda f: f.sent_to(BEN_WA), timeout=0.1, message="nobody else")


def test_many_sends_over_one_client_keep_alive(fake: FakeTwilio) -> None:
    client = client_for(fake)
    sids = {client.messages.create(to=f"+4477009001{i:02d}", from_=OUR_SMS, body="Hi").sid
            for i in range(30)}
    assert len(sids) == 30 and len(fake.sent) == 30


def test_reset_forgets_everything(fake: FakeTwilio) -> None:
    fake.error_for(AMIRA, 400, 21610)
    client_for(fake).messages.create(to=BEN_WA, from_=OUR_WA, body="Hi")
    fake.reset()
    assert fake.requests == []
    client_for(fake).messages.create(to=AMIRA, from_=OUR_SMS, body="Hi")
    assert len(fake.sent) == 1
