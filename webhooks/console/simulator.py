"""The simulator: staff chat with the real bot as an SMS, WhatsApp or Telegram user.

Messages go to the real Service bound to a sandbox database (bot.shell.simulator), so nothing
said here is ever counted, exported, broadcast to or moderated. With JavaScript the page
is a chat (JSON); without it, the form posts and the page shows the latest exchange."""

from __future__ import annotations

import html
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for

from bot.core.conversation import Channel
from bot.core.render import Rendered
from bot.shell.simulator import Exchange, address
from webhooks.console.access import console, me, route
from webhooks.console.forms import ActionForm, SimulatorForm

SHARE = "SHARE_PHONE"


@route("/simulator", "viewer")
def simulator() -> Any:
    channel = _channel(request.args.get("channel", "sms"))
    return render_template("staff/simulator.html", channel=channel, form=SimulatorForm(),
                           reset_form=ActionForm(), channels=list(Channel),
                           address=address(me().id, channel), exchange=None, said=None)


@route("/simulator/<channel>/send", "viewer", methods=["POST"])
def simulator_send(channel: str) -> Any:
    chosen = _channel(channel)
    form = SimulatorForm()
    text = (form.text.data or "").strip() if form.validate() else ""
    share = request.form.get("press") == SHARE
    press = request.form.get("press", "")
    if press and not share:
        text = press[:64]  # a Telegram button sends its callback keyword
    if not text and not share:
        if _wants_json():
            return jsonify(error="type a message"), 400
        flash("Type a message to send.", "error")
        return redirect(url_for("staff.simulator", channel=chosen.value), code=303)
    exchange = console().sandbox().send(me().id, chosen, text, share_phone=share)
    if _wants_json():
        return jsonify(replies=_replies(exchange, chosen), step=exchange.step)
    return render_template("staff/simulator.html", channel=chosen, form=SimulatorForm(
        formdata=None), reset_form=ActionForm(), channels=list(Channel),
        address=address(me().id, chosen), exchange=_replies(exchange, chosen),
        said="(shared the phone number)" if share else text)


@route("/simulator/reset", "viewer", methods=["POST"])
def simulator_reset() -> Any:
    ActionForm()
    console().sandbox().reset(me().id)
    flash("The simulated supporter was forgotten on every channel: the next message starts "
          "afresh.", "info")
    return redirect(url_for("staff.simulator", channel=request.args.get("channel", "sms")),
                    code=303)


def _reply(rendered: Rendered, channel: Channel) -> dict[str, Any]:
    # Telegram's text is HTML for parse_mode=HTML: shown as Telegram shows it, unescaped
    # here and put on the page as text (never as markup).
    text = html.unescape(rendered.text) if channel == Channel.TELEGRAM else rendered.text
    return {"text": text, "buttons": [{"label": label, "data": data}
                                      for label, data in rendered.buttons],
            "contact_button": rendered.contact_button}


def _replies(exchange: Exchange, channel: Channel) -> list[dict[str, Any]]:
    return [_reply(r, channel) for r in exchange.replies]


def _channel(name: str) -> Channel:
    try:
        return Channel(name)
    except ValueError:
        abort(404, "No such channel.")


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"
