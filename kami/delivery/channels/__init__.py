"""Delivery channels: one module per channel behind one interface, looked up by name.

A channel performs one outbox message and returns normally when it was handed over, or raises.
Any exception is retried with backoff; `PermanentFailure` goes straight to `manual` (retrying
cannot fix an address the mail server says does not exist). Exception messages become
`last_error` and log lines, so channels must never put a key in them.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol

from kami.core.errors import NotFound, Retryable
from kami.delivery.models import OutboxMessage


class PermanentFailure(Exception):
    """Retrying will not help: escalate to a human now."""


class TemporaryFailure(Retryable):
    """The channel failed in a way that may go away (server down, timeout, 4xx)."""


class Deferred(Exception):
    """Not now, and not a failure: the message waits until `until` without spending an attempt
    (a webhook whose order has an earlier event still on its way: kami.webhooks.channel)."""

    def __init__(self, reason: str, *, until):
        super().__init__(reason)
        self.until = until


class Channel(Protocol):
    name: str

    def send(self, message: OutboxMessage) -> None:
        """Perform `message`; raise on failure. Called outside any database transaction.
        May set `message.message_id` (a stable reference the worker records)."""

    # Optional: `batch(messages)`, a context manager around a worker pass in the thread that sends
    # it, given the pass's claimed messages (all channels'): a channel may keep a connection open
    # across them (and must close it on exit) and read what its messages need once for the pass.


_registry: dict[str, Channel] = {}
_builtin_loaded = False
_load_lock = threading.Lock()


def channel_register(channel: Channel) -> None:
    """Add or replace a channel (tests register fakes this way)."""
    _load_builtin()
    _registry[channel.name] = channel


def channel_get(name: str) -> Channel:
    _load_builtin()
    try:
        return _registry[name]
    except KeyError:
        raise NotFound(f"no delivery channel named {name!r}; known: {', '.join(sorted(_registry))}") from None


@contextmanager
def channels_batch(messages: list[OutboxMessage]) -> Iterator[None]:
    """One worker pass over `messages`: every channel with a `batch()` may keep its connection for
    the pass (the email channel keeps one SMTP session per thread, and reads the orders and keys
    of all the pass's key emails at once) and closes it when the pass ends."""
    _load_builtin()
    with ExitStack() as stack:
        for channel in list(_registry.values()):
            batch = getattr(channel, "batch", None)
            if batch is not None:
                stack.enter_context(batch(messages))
        yield


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    with _load_lock:  # workers may be threads: nobody may see a half-filled registry
        if _builtin_loaded:
            return
        from kami.delivery.channels.email import EmailChannel
        from kami.delivery.channels.log import LogChannel
        from kami.delivery.channels.telegram import TelegramChannel
        from kami.delivery.channels.webhook import WebhookChannel

        for channel in (EmailChannel(), LogChannel(), TelegramChannel(), WebhookChannel()):
            _registry.setdefault(channel.name, channel)
        _builtin_loaded = True
