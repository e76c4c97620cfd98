"""What a mint URL must answer: `{"keys": ["…", …]}`, exactly one key per item, in item order,
each a line the key importer would take (kami.stock.importer.line_check) and no two alike.

Anything else is a BadAnswer: retried like a timeout, then left to a person. Its message names
the problem and the item, never a key's text (it becomes the outbox row's last_error and a log
line)."""
from __future__ import annotations

import json

from kami.stock.importer import line_check

ANSWER_MAX_BYTES = 1024 * 1024  # far above 1,000 keys of 1,024 characters; a bigger answer is refused unread


class BadAnswer(ValueError):
    """The mint URL answered 2xx with something that is not `quantity` usable keys."""


def answer_keys(body: bytes, *, quantity: int) -> list[str]:
    """The normalised keys in `body`, one per item; raises BadAnswer saying what is wrong."""
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadAnswer('answer is not JSON; answer {"keys": ["…"]} with one key per item') from None
    keys = answer.get("keys") if isinstance(answer, dict) else None
    if not isinstance(keys, list):
        raise BadAnswer('answer has no "keys" list; answer {"keys": ["…"]} with one key per item')
    if len(keys) != quantity:
        raise BadAnswer(f"answer has {len(keys)} key(s) for {quantity} item(s); answer exactly one key per item")
    return _checked(keys)


def _checked(keys: list) -> list[str]:
    normalised: list[str] = []
    for n, key in enumerate(keys, start=1):
        if not isinstance(key, str):
            raise BadAnswer(f"key {n} is {type(key).__name__}, not a string")
        problem, text = line_check(key.encode("utf-8", "surrogatepass"))
        if problem or not text:
            problem = problem.replace("line longer", "is longer", 1).replace(" (save the file as UTF-8)", "")
            raise BadAnswer(f"key {n} {problem or 'is empty'}")
        if text in normalised:
            raise BadAnswer(f"key {n} repeats key {normalised.index(text) + 1}; mint one key per item")
        normalised.append(text)
    return normalised
