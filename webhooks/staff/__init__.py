"""The staff console: a server-rendered blueprint under /staff.

Every view is declared with `route(rule, role)`, which checks the login and the role and
records the role in ROLES, so a test can prove that no console route goes unguarded.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("staff", __name__, url_prefix="/staff", template_folder="templates",
               static_folder="static")


def init_app(app: Flask) -> None:
    """Login, CSRF, the console's state and its views; called by create_app."""
    from webhooks.staff import access

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
