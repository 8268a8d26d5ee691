"""Who may do what in the console: login sessions, roles, the audit helper, the console's
per-process state (figures cache, simulator sandbox), error pages and security headers.

A login session is a row in `staff_sessions` (bot/shell/staff.py): the Flask-Login id in the
signed cookie names it by a random token, and every request looks it up, so a logout or
the 12-hour limit ends it on every process at once, even for a copy of the cookie."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, ValidationError

from bot.shell import staff as accounts
from bot.shell.simulator import Sandbox
from webhooks.runtime import runtime

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

View = TypeVar("View", bound=Callable[..., Any])

# endpoint -> the least role that may use it ("public": no login)
ROLES: dict[str, str] = {"staff.static": "public"}
CACHE_SECONDS = 10.0
MAX_PAGE = 100_000  # a page number beyond this is no page (and no database overflow)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


@dataclass
class Principal(UserMixin):  # type: ignore[misc]
    """The logged-in staff member (a plain value, not a database row)."""

    id: int
    email: str
    role: str
    tag: str  # fingerprint of the password hash: a new password ends old sessions
    token: str  # names this sign-in's row in staff_sessions (only its hash is stored)

    def get_id(self) -> str:
        return f"{self.id}:{self.tag}:{self.token}"

    def may(self, role: str) -> bool:
        return accounts.may(self.role, role)


class TTLCache:
    """A few seconds of memory for expensive figures (per process)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any], seconds: float | None = None) -> Any:
        ttl = self.seconds if seconds is None else seconds
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        value = make()
        with self._lock:
            stamp = time.monotonic()
            if len(self._items) > 256:  # bounded: old days and finished announcements go
                self._items = {k: v for k, v in self._items.items() if stamp - v[0] < 300}
            self._items[key] = (stamp, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Console:
    cache: TTLCache = field(default_factory=lambda: TTLCache(CACHE_SECONDS))
    _sandbox: Sandbox | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sandbox(self) -> Sandbox:
        with self._lock:
            if self._sandbox is None:
                rt = runtime()
                url = current_app.config.get("STAFF_SIMULATOR_DATABASE_URL") or (
                    f"sqlite:///{Path('instance').resolve() / 'simulator.db'}")
                if url.startswith("sqlite:///"):
                    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                      exist_ok=True)
                self._sandbox = Sandbox(rt.config, url, rt.service)
            return self._sandbox


def cache_seconds(default: float) -> float:
    """How long figures may be reused (STAFF_CACHE_SECONDS caps it; tests set 0)."""
    cap = current_app.config.get("STAFF_CACHE_SECONDS")
    return default if cap is None else min(default, float(cap))


def console() -> Console:
    state: Console = current_app.extensions["petitionbot.staff"]
    return state


def init_app(app: Flask) -> None:
    # Set, not setdefault: Flask always has this key (31 days). The cookie goes when the
    # sign-in's row does (staff_sessions.expires_at, counted from sign-in, not from the
    # last request), which is what actually ends the session.
    app.config["PERMANENT_SESSION_LIFETIME"] = accounts.SESSION_LIFETIME
    # A form's token lasts as long as the login (at most 12 hours), not one hour: a long
    # announcement written slowly must not be refused on saving.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    manager = LoginManager()
    manager.init_app(app)
    manager.session_protection = "basic"
    manager.user_loader(_load_user)
    manager.unauthorized_handler(_unauthorized)
    app.extensions["petitionbot.staff"] = Console()


def _load_user(user_id: str) -> Principal | None:
    """The staff member of an open sign-in: refused if the sign-in is unknown, ended
    (logout) or expired, or the password has changed since (its tag)."""
    number, tag, token = [*user_id.split(":", 2), "", ""][:3]
    if not (number.isdigit() and len(number) <= 18 and tag and token):
        return None  # includes cookies from before sign-ins were stored: log in again
    with runtime().sessions() as session:
        user = accounts.session_user(session, int(number), token, now())
        if user is None or accounts.fingerprint(user.password_hash) != tag:
            return None
        return Principal(user.id, user.email, user.role, tag, token)


def _unauthorized() -> Any:
    if request.path.endswith(".json"):
        response = jsonify(error="log in first")
        response.status_code = 401
        return response
    return redirect(url_for("staff.login", next=request.full_path.rstrip("?")))


def route(rule: str, role: str, **options: Any) -> Callable[[View], View]:
    """Declare a console view and the least role it needs ("public": anyone)."""

    def decorator(view: View) -> View:
        endpoint = options.pop("endpoint", view.__name__)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if role != "public":
                if not current_user.is_authenticated:
                    return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
                if not current_user.may(role):
                    abort(403, f"This needs the {role} role; you are a {current_user.role}.")
            return view(*args, **kwargs)

        ROLES[f"staff.{endpoint}"] = role
        bp.add_url_rule(rule, endpoint, guarded, **options)
        return guarded  # type: ignore[return-value]

    return decorator


def me() -> Principal:
    user: Principal = current_user._get_current_object()
    return user


def now() -> dt.datetime:
    return runtime().service.clock()


def record(session: Session, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    """An audit entry for what the logged-in staff member just did."""
    accounts.audit(session, me().email, action, target, detail, now())


def hashed(value: str) -> str:
    """A stand-in for an email or address in the audit log: keyed by the app's secret, so
    it cannot be reversed by hashing every address, yet equal values still match."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def petition_asked() -> str:
    """The petition a page was asked for (`?petition=`, else the default); 404 if none."""
    slug = request.args.get("petition", runtime().config.default_petition)
    try:
        runtime().service.content().petition(slug)  # staff may have created it
    except KeyError:
        abort(404, "No such petition.")
    return slug


def page_number() -> int:
    """The `page` query parameter, 1 to MAX_PAGE (anything else is the first page)."""
    page = request.args.get("page", 1, type=int)
    return page if 1 <= page <= MAX_PAGE else 1


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[Any, int]:
    code = error.code or 500
    if request.path.endswith(".json"):
        return jsonify(error=error.description), code
    message = error.description
    if error.name == "Bad Request" and "CSRF" in (error.description or ""):
        message = "This form has expired or was not sent from the console. Go back, " \
                  "reload the page and try again."
    return render_template("staff/error.html", code=code, name=error.name,
                           message=message), code


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "staff.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_filter("number")
def number(value: int | float | None) -> str:
    return f"{value or 0:,}"


@bp.app_template_filter("when")
def when(value: dt.datetime | None) -> str:
    """A time in the campaign's zone, e.g. 27 Nov 2026 14:05."""
    if value is None:
        return ""
    import zoneinfo

    tz = zoneinfo.ZoneInfo(runtime().config.broadcast.timezone)
    return value.astimezone(tz).strftime("%d %b %Y %H:%M")


@bp.app_context_processor
def template_globals() -> dict[str, Any]:
    return {"me": current_user, "organisation": runtime().config.organisation}
