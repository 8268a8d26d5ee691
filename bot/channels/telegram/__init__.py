"""Telegram, through python-telegram-bot: `inbound` (updates in by webhook or polling, and
the replies to them), `outbound` (broadcast sends), `gateway` (the process's Bot and the
event loop it runs on)."""
