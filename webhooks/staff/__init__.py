"""The staff console: a server-rendered blueprint under /staff.

Every view is declared with `route(rule, role)`, which checks the login and the role and
records the role in ROLES, so a test can prove that no console route goes unguarded.
Ids in its URLs are `<id:...>`, never `<int:...>`: see IdConverter.
"""

from __future__ import annotations

from flask import Blueprint, Flask
from werkzeug.routing import BaseConverter, ValidationError

bp = Blueprint("staff", __name__, url_prefix="/staff", template_folder="templates",
               static_folder="static")
MAX_ID = 2**63 - 1  # the largest BIGINT (and SQLite INTEGER)


class IdConverter(BaseConverter):
    """A row id in a URL: 1 to MAX_ID. A longer number would overflow the database's
    integer (a 500 or 503); here it simply matches no route, a 404."""

    regex = r"[1-9][0-9]{0,18}"  # no sign, no leading zero, at most 19 digits

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def init_app(app: Flask) -> None:
    """Login, CSRF, the console's state and its views; called by create_app."""
    from webhooks.staff import access

    # Before the blueprint's rules are bound to the app's map, which parses `<id:...>`.
    app.url_map.converters["id"] = IdConverter
    access.init_app(app)
    from webhooks.staff import (  # noqa: F401  (importing registers the views)
        announcement_actions,
        announcements,
        audit,
        auth,
        dashboard,
        handin,
        simulator,
        supporters,
        voices,
    )

    app.register_blueprint(bp)
