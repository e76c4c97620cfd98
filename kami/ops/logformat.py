"""`KAMI_LOG_FORMAT=json`: each log record as one JSON object on one line, for log shippers
(journald → Loki, Vector, Filebeat) that would otherwise have to parse the text format.

    {"time": "2026-12-04T18:51:21.123+00:00", "level": "WARNING", "logger": "kami.delivery.worker",
     "message": "…", <the record's extra fields>, "exception": "Traceback …"}

Standard library only: settings.py loads it before Django is set up. The same things are written
as in the text format, no more: `message` is the record's own formatting (a kami.core.crypto.Secret
argument shows as its mask there too), and an extra field is written as JSON only when it is a plain
str, number, bool or None (or a list/dict of those); anything else is written as its repr. That rule
matters: Secret is a str subclass, which json.dumps would otherwise write out as the plaintext."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# Attributes every LogRecord has: whatever else is on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
# Objects Django's loggers attach that the line does not need (the message already names the path).
_DROPPED = frozenset({"request", "server_time"})


def _plain(value):
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (list, tuple):
        return [_plain(item) for item in value]
    if type(value) is dict:
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)  # a Secret's repr is its mask; a model's, its id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in _DROPPED and name not in entry:
                entry[name] = _plain(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=repr)
