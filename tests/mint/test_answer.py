"""What a mint URL's answer must be: exactly one usable key per item (kami.fulfilment.mint.answer)."""
from __future__ import annotations

import json

import pytest

from kami.fulfilment.mint.answer import BadAnswer, answer_keys

pytestmark = pytest.mark.sqlite_only


def body(value) -> bytes:
    return json.dumps(value).encode()


def test_keys_come_back_normalised_in_item_order():
    assert answer_keys(body({"keys": ["  AAAA-1 ", "user\tpass"]}), quantity=2) == ["AAAA-1", "user\tpass"]


@pytest.mark.parametrize("answer, problem", [
    (b"not json", "answer is not JSON"),
    (b"\xff\xfe", "answer is not JSON"),
    (body(["A", "B"]), 'answer has no "keys" list'),
    (body({"keys": "A"}), 'answer has no "keys" list'),
    (body({"keys": ["A"]}), "answer has 1 key(s) for 2 item(s)"),
    (body({"keys": ["A", "B", "C"]}), "answer has 3 key(s) for 2 item(s)"),
    (body({"keys": ["A", None]}), "key 2 is NoneType, not a string"),
    (body({"keys": [{"key": "A"}, "B"]}), "key 1 is dict, not a string"),
    (body({"keys": ["A", "   "]}), "key 2 is empty"),
    (body({"keys": ["A\nB", "C"]}), "key 1 contains control character U+000A"),
    (body({"keys": ["A", "B\x00"]}), "key 2 contains a NUL byte"),
    (body({"keys": ["A", "B\u200b"]}), "key 2 contains invisible character U+200B"),
    (body({"keys": ["A", "x" * 1025]}), "key 2 is longer than 1024 characters"),
    (body({"keys": ["SAME", " SAME"]}), "key 2 repeats key 1"),
])
def test_a_malformed_answer_says_what_is_wrong_without_the_key(answer, problem):
    with pytest.raises(BadAnswer) as caught:
        answer_keys(answer, quantity=2)
    assert problem in str(caught.value)
    assert "SAME" not in str(caught.value) and "xxxx" not in str(caught.value)
