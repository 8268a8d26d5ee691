"""The staff API under /api/v1 (DESIGN §9): JSON in and out, `Authorization: Bearer
<token>`, a token acting with its staff member's role and name. No CSRF: a token request
carries no cookie a browser could send on another site's behalf."""

from __future__ import annotations

from webhooks.api_v1 import (  # noqa: F401  (importing a module registers its views)
    announcements,
    conversations,
    imports,
    openapi,
    petitions,
    signatures,
    supporters,
    webhooks,
)
from webhooks.api_v1.auth import ROLES, bp

__all__ = ["ROLES", "bp"]
