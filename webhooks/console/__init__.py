"""The staff console: a server-rendered blueprint under /staff.

Every view is declared with `route(rule, role)`, which checks the login and the role and
records the role in ROLES, so a test can prove that no console route goes unguarded.
Ids in its URLs are `<id:...>`, never `<int:...>`: see access.IdConverter.
"""

from __future__ import annotations

from flask import Flask

from webhooks.console import (  # noqa: F401  (importing a module registers its views)
    access,
    account,
    announcement_actions,
    announcements,
    audit,
    auth,
    colleagues,
    dashboard,
    handin,
    imports,
    inbox,
    petitions,
    receivers,
    simulator,
    supporters,
    test_sends,
    texts,
    tokens,
    voices,
)
from webhooks.console.access import IdConverter, bp


def init_app(app: Flask) -> None:
    """Login, CSRF, the console's state and its views; called by create_app."""
    # Before the blueprint's rules are bound to the app's map, which parses `<id:...>`.
    app.url_map.converters["id"] = IdConverter
    access.init_app(app)
    app.register_blueprint(bp)
