"""The console's forms (Flask-WTF: every one carries its CSRF token)."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

CHANNELS = [("sms", "SMS"), ("whatsapp", "WhatsApp"), ("telegram", "Telegram")]
NATIONS = [("england", "England"), ("scotland", "Scotland"), ("wales", "Wales"),
           ("northern_ireland", "Northern Ireland"),
           ("crown_dependencies", "Channel Islands and Isle of Man"),
           ("bfpo", "British Forces (BFPO)"), ("outside_uk", "Outside the UK")]


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]
AREA = re.compile(r"^[A-Z]{1,4}$")


class CheckboxesField(SelectMultipleField):
    """A group of checkboxes (a fieldset in the template)."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=254)],
                        render_kw={"autocomplete": "username", "type": "email"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)],
                             render_kw={"autocomplete": "current-password"})


def areas_of(raw: str) -> list[str]:
    """"eh, G  cf" -> ["EH", "G", "CF"]."""
    return [a for a in re.split(r"[\s,;]+", raw.upper()) if a]


class ComposeForm(FlaskForm):
    text = TextAreaField("Message", validators=[DataRequired(), Length(max=1200)],
                         render_kw={"rows": 7, "maxlength": 1200})
    channels = CheckboxesField("Channels", choices=choices(CHANNELS),
                              validate_choice=True)
    nations = CheckboxesField("Nations", choices=choices(NATIONS),
                             validate_choice=True)
    areas = StringField("Postcode areas", validators=[Optional(), Length(max=200)],
                        description="Separated by commas, e.g. EH, G, CF. Empty: everywhere.")
    test_group = BooleanField("Only the staff test group")
    template_sid = StringField(
        "WhatsApp template (Content SID)",
        validators=[Optional(), Regexp(r"^HX[0-9a-fA-F]{32}$",
                                       message="A Content SID is HX and 32 hexadecimal digits")],
        description="Sent instead to WhatsApp recipients outside the 24-hour window; "
                    "without one they are skipped.")

    def validate_areas(self, field: Any) -> None:
        wrong = [a for a in areas_of(field.data or "") if not AREA.match(a)]
        if wrong:
            raise ValidationError("Not postcode areas: " + ", ".join(wrong)
                                  + " (use the letters only, e.g. EH)")


class ApproveForm(FlaskForm):
    when = RadioField("When", choices=choices([("now", "Send now"), ("later", "Schedule")]),
                      default="now")
    at = DateTimeLocalField("Send at (UK time)", format="%Y-%m-%dT%H:%M",
                            validators=[Optional()])
    # broadcast.digest of the version on the page: a draft edited since is not approved.
    seen = HiddenField(validators=[Optional(), Length(max=64)])


class ActionForm(FlaskForm):
    """A button that changes something: only its CSRF token."""


class EraseForm(FlaskForm):
    confirm = StringField("Type ERASE to confirm", validators=[DataRequired()])

    def validate_confirm(self, field: Any) -> None:
        if (field.data or "").strip() != "ERASE":
            raise ValidationError("Type ERASE (in capitals) to confirm.")


class SimulatorForm(FlaskForm):
    text = StringField("Your message", validators=[Length(max=1600)],
                       render_kw={"autocomplete": "off"})


class TokenForm(FlaskForm):
    name = StringField("What is it for?", validators=[DataRequired(), Length(max=80)],
                       description="e.g. CRM sync. The token acts as you, with your role.",
                       render_kw={"autocomplete": "off", "maxlength": 80})


class ReplyForm(FlaskForm):
    text = TextAreaField("Reply", validators=[DataRequired(), Length(max=1600)],
                         render_kw={"rows": 5, "maxlength": 1600})


class NoteForm(FlaskForm):
    note = TextAreaField("Your note", validators=[DataRequired(), Length(max=2000)],
                         description="Only staff see notes; the supporter never does.",
                         render_kw={"rows": 3, "maxlength": 2000})


class FollowUpForm(FlaskForm):
    action = TextAreaField("What was done", validators=[DataRequired(), Length(max=2000)],
                           render_kw={"rows": 2, "maxlength": 2000})


class SavedReplyForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=80)],
                        render_kw={"autocomplete": "off", "maxlength": 80})
    text = TextAreaField("Text", validators=[DataRequired(), Length(max=1600)],
                         render_kw={"rows": 4, "maxlength": 1600})
