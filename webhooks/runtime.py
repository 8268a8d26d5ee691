"""What every request needs, built once per process by create_app and kept on the app:
blueprints read it with `runtime()`, so none of them imports the package that builds them."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.telegram.gateway import TelegramGateway
from bot.infra.config import Config
from bot.infra.settings import Settings
from bot.shell.service import Service


@dataclass
class Runtime:
    """Everything a request needs, built once per process by create_app."""

    settings: Settings
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    service: Service
    telegram: TelegramGateway | None = None  # started on first use, in the serving process


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["petitionbot"]
    return rt
