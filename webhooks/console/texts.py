"""The bot's words (admins): every text of bot/core/texts.py with its wording now, an edit
page with the fields it may use and a preview per channel, save and reset to default.

The rules (the checks start-up makes, consent versions, the audit) are in
bot/shell/rewording.py, shared with the staff API; this module parses and renders. Without
JavaScript, "Preview" posts the form and shows the page again with the typed wording."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import TextAreaField

from bot.core.texts import DEFAULTS
from bot.infra.config import MAX_TEXT, Petition
from bot.shell import bot_texts, rewording
from bot.shell.bot_texts import CONSENT_KEYS, FIELD_MEANINGS
from webhooks.console.access import me, now, route
from webhooks.console.forms import ActionForm
from webhooks.runtime import runtime

# The texts as a supporter meets them: (heading, ((key, when the bot says it), ...)).
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Greeting and reading the petition", (
        ("greeting", "The first answer to anyone who writes"),
        ("greeting_signed", "The first answer to someone who has signed already"),
        ("unknown_petition", "Someone asks for a petition code that does not exist"),
        ("page", "A page of the petition's full text (MORE)"),
        ("page_last", "The last page of the petition's full text"),
        ("page_whole", "The petition's full text when it fits on one page"),
        ("info", "Details of the petition (INFO)"),
        ("voices", "Why people signed, shown after INFO"),
        ("voice_line", "One supporter's reason in that list"),
        ("help", "HELP, before signing"),
        ("help_signed", "HELP, after signing"),
    )),
    ("Consent", (
        ("consent", "The consent statement, asked before anything personal (SIGN)"),
        ("ask_updates", "The question whether they want updates, after signing"),
        ("consent_declined", "They answer NO to the consent statement"),
        ("consent_again", "The consent question asked again"),
    )),
    ("Signing", (
        ("ask_name", "Asks for their full name"),
        ("name_invalid", "The name sent cannot be used"),
        ("name_again", "The name asked again"),
        ("ask_postcode", "Asks for their postcode"),
        ("postcode_invalid", "The postcode sent is not a UK postcode"),
        ("postcode_again", "The postcode asked again"),
        ("ask_country", "Asks for their country (outside the UK)"),
        ("country_invalid", "The country sent cannot be used"),
        ("review", "Shows what will be recorded before signing"),
        ("place_postcode", "Their postcode, as shown in other texts"),
        ("place_country", "Their country, as shown in other texts"),
        ("review_cancelled", "They do not confirm the signature"),
        ("signed", "Thanks for signing, with the share link"),
        ("already_signed", "Someone who signed tries to sign again"),
        ("petition_closed", "Someone tries to sign a closed petition"),
        ("updates_yes", "They said yes to updates"),
        ("updates_no", "They said no to updates"),
    )),
    ("Why I signed", (
        ("ask_voice", "Asks why they signed (VOICE)"),
        ("voice_invalid", "Their reason is too long or empty"),
        ("voice_again", "Why they signed, asked again"),
        ("ask_publish", "Asks whether their words may be published"),
        ("voice_thanks", "Thanks for their words"),
        ("voice_not_kept", "Their words were not kept"),
    )),
    ("Their data, stopping and deleting", (
        ("status", "What we hold about them (STATUS)"),
        ("status_nothing", "STATUS when we hold nothing"),
        ("status_signature", "Their signature, in STATUS"),
        ("status_updates", "Whether they get updates, in STATUS"),
        ("status_in_progress", "A signing not finished, in STATUS"),
        ("status_voice", "Their words, in STATUS"),
        ("voice_pending", "Their words are not read yet, in STATUS"),
        ("voice_published", "Their words are published, in STATUS"),
        ("voice_private", "Their words are not published, in STATUS"),
        ("status_inbox", "How many messages they sent the team, in STATUS"),
        ("stopped", "They sent STOP"),
        ("started", "They sent START after STOP"),
        ("delete_confirm", "Asks them to confirm DELETE"),
        ("deleted", "Their data has been erased"),
        ("delete_kept", "They did not confirm DELETE"),
    )),
    ("Writing to a person", (
        ("ask_person", "Asks what they want to say to the team (PERSON)"),
        ("inbox_told", "Says who reads their messages and when they will hear back"),
        ("inbox_soon", "When they will hear back, outside known office hours"),
        ("inbox_noted", "Thanks for a further message to the team"),
        ("signpost", "Their words suggest they are in distress: where to find help"),
    )),
    ("Telegram and phone numbers", (
        ("offer_link", "Offers to link their Telegram chat to their phone number"),
        ("phone_linked", "Their Telegram chat is now linked"),
        ("contact_refused", "They shared someone else's phone number"),
    )),
    ("When the bot cannot help", (
        ("not_understood", "The bot did not understand"),
        ("not_understood_choose", "The bot did not understand a choice"),
        ("over_budget", "They sent very many messages in a short time"),
    )),
)
WHEN = {key: when for _, texts in GROUPS for key, when in texts}
SOURCES = {"default": "Built-in wording", "file": "Wording from config.toml",
           "console": "Changed here"}


class TextForm(FlaskForm):
    text = TextAreaField("Wording", render_kw={"rows": 7})


@route("/texts", "admin")
def bot_texts_list() -> Any:
    with runtime().sessions() as session:
        found = bot_texts.wordings(session, runtime().config)
    listed = set(WHEN)
    groups = [(title, [found[key] for key, _ in keys]) for title, keys in GROUPS]
    others = [w for key, w in found.items() if key not in listed]  # a text added later
    if others:
        groups.append(("Other texts", others))
    return render_template("staff/texts.html", groups=groups, when=WHEN, sources=SOURCES)


@route("/texts/<key>", "admin", methods=["GET", "POST"])
def bot_text(key: str) -> Any:
    _known(key)
    rt = runtime()
    form = TextForm()
    problems: list[str] = []
    if form.validate_on_submit():
        typed = form.text.data or ""
        if request.form.get("action") == "save":
            problems = _save(key, typed)
            if not problems:
                return redirect(url_for("staff.bot_text", key=key), code=303)
        else:
            problems = bot_texts.problems(rt.config, key, bot_texts.tidy(typed))
    with rt.sessions() as session:
        wording = bot_texts.wordings(session, rt.config)[key]
        if not form.is_submitted():
            form.text.data = wording.text
        history = bot_texts.consent_history(session, rt.config) if key in CONSENT_KEYS \
            else []
        petition = _sample_petition(session)
    shown = bot_texts.tidy(form.text.data or "")
    preview = bot_texts.preview(rt.config, petition, key, shown) if shown and not problems \
        else None
    return render_template(
        "staff/text.html", wording=wording, when=WHEN.get(key, ""), form=form,
        problems=[p[0].upper() + p[1:] for p in problems], preview=preview,
        meanings=FIELD_MEANINGS, history=history, consent=key in CONSENT_KEYS,
        sources=SOURCES, typed=form.is_submitted(), max_text=MAX_TEXT,
        action=ActionForm()), 400 if problems else 200


@route("/texts/<key>/reset", "admin", methods=["POST"])
def reset_bot_text(key: str) -> Any:
    _known(key)
    ActionForm()
    rt = runtime()
    with rt.sessions.begin() as session:
        change = rewording.reset(session, rt.config, key, me().email, now())
    if change is None:
        flash("It already says the default wording.", "info")
    else:
        flash("Back to the default wording. The bot says it from the next message on."
              + _version_note(change), "info")
    return redirect(url_for("staff.bot_text", key=key), code=303)


def _save(key: str, typed: str) -> list[str]:
    """Save the wording; the problems that stopped it, if any."""
    rt = runtime()
    try:
        with rt.sessions.begin() as session:
            change = rewording.save(session, rt.config, key, typed, me().email, now())
    except rewording.TextError as error:
        return error.problems
    if change is None:
        flash("Nothing changed: the bot already says exactly that.", "info")
    else:
        flash("Saved. The bot says it from the next message on." + _version_note(change),
              "info")
    return []


def _version_note(change: rewording.Change) -> str:
    if change.consent_version is None:
        return ""
    return (f" New signers are asked under consent version {change.consent_version}; "
            "people who agreed before keep the version they were shown.")


def _known(key: str) -> None:
    if key not in DEFAULTS:
        abort(404, "The bot has no text of that name.")


def _sample_petition(session: Session) -> Petition:
    """The petition whose details fill the preview: the default one, as it is now."""
    rt = runtime()
    live = rt.service.content(session)
    try:
        return live.petition(rt.config.default_petition)
    except KeyError:
        return live.petitions[0]


__all__ = ["GROUPS", "TextForm"]
