"""Every string the buyer can see is translated into zh-hans: each {% trans %}, each simple
{% blocktrans %} and each gettext("…") in the code resolves to a Chinese text in Django's own
catalogue (so a string added without a translation fails here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.utils import translation

pytestmark = pytest.mark.sqlite_only  # message catalogues: the same on every engine

KAMI = Path(__file__).resolve().parent.parent / "kami"
TRANS = re.compile(r"""{%\s*trans(?:late)?\s+(["'])(.+?)\1\s*%}""")
BLOCK = re.compile(r"{%\s*blocktrans(?:late)?(?P<args>[^%]*)%}(?P<body>.*?){%\s*(?:plural|endblocktrans(?:late)?)\s*%}",
                   re.S)
# gettext("…"), gettext_lazy("…") and the usual `_("…")` alias of either.
CODE = re.compile(r"""(?<![\w.])(?:gettext|gettext_lazy|_)\(\s*(["'])(.+?)\1\s*[,)]""")  # one literal
VAR = re.compile(r"{{\s*(\w+)\s*}}")


def visible_strings() -> set[str]:
    found = set()
    for path in KAMI.rglob("*"):
        if path.suffix in (".html", ".txt") and "templates" in path.parts:
            text = path.read_text(encoding="utf-8")
            found.update(m.group(2) for m in TRANS.finditer(text))
            for m in BLOCK.finditer(text):
                body = m.group("body")
                if "trimmed" in m.group("args"):
                    body = " ".join(line.strip() for line in body.strip().splitlines())
                found.add(VAR.sub(lambda v: f"%({v.group(1)})s", body))
        elif path.suffix == ".py" and "migrations" not in path.parts:
            found.update(m.group(2) for m in CODE.finditer(path.read_text(encoding="utf-8")))
    return found


def test_every_visible_string_has_a_chinese_translation():
    strings = visible_strings()
    assert len(strings) > 30  # the scan really found the templates
    with translation.override("zh-hans"):
        missing = sorted(s for s in strings if translation.gettext(s) == s)
    assert missing == []
