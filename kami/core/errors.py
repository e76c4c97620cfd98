"""Error types. Anticipated outcomes (sold out, invalid input), retryable trouble (gateway or
SMTP down) and verification failures are distinct so every edge can answer correctly."""
from __future__ import annotations


class KamiError(Exception):
    """Base class. `code` is stable and machine-readable; the message says what to do."""

    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None, **details):
        super().__init__(message)
        if code:
            self.code = code
        self.details = details


class BadInput(KamiError):
    """The caller gave something we cannot accept; the message names the input and the fix."""

    code = "invalid"


class NotFound(KamiError):
    code = "not_found"


class SoldOut(KamiError):
    code = "sold_out"


class Conflict(KamiError):
    code = "conflict"


class VerificationFailed(KamiError):
    """A notification whose signature, merchant id or shape does not check out. Never retried."""

    code = "verification_failed"


class Retryable(KamiError):
    """Trouble that may go away: a gateway or SMTP server down, a lock timeout."""

    code = "retryable"
