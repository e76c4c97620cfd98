"""Issue 12, hostile key files: hypothesis-made files mixing good keys with BOMs, CRLF, NUL bytes,
invalid UTF-8 (lone surrogates, overlong forms), control characters, 100 KB lines and blank
lines. Each bad line is reported by number with its reason, each good one stored exactly once,
and the keys stored before are untouched — through the importer, `kami keys import` and the
back office upload (the last two are the edges merchants use)."""
from __future__ import annotations

import gzip
import io
import random
import re
import unicodedata
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from kami.core.errors import BadInput
from kami.fulfilment.imports import import_jobs_run_due
from kami.stock.models import ImportJob, Key
from tests.backoffice.staffing import admin_url, signed_in
from tests.stock.helpers import import_bytes, import_lines, stored_keys

# The edges' tests run on every engine (the bulk insert differs); the generated files and the
# known gaps are about reading, before any database: SQLite only.
pytestmark = [pytest.mark.django_db]
OLD = ["OLD-KEY-1", "OLD-KEY-2", "OLD-KEY-3"]
TOO_LONG, NOT_UTF8, NUL = "line longer than 1024 characters", "not valid UTF-8 (save the file as UTF-8)", "contains a NUL byte"


@dataclass(frozen=True)
class Line:
    raw: bytes
    key: str = ""  # the key it holds, normalised ("" for blank or invalid)
    problem: str = ""


KEY_TEXT = st.text(st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ23456789-"), min_size=4, max_size=24)
UNICODE_KEY = st.sampled_from(["密钥-Ключ-مفتاح-1", "café-ÀÉÎ-2", "帐号\t密码-3", "🎮-GAME-4", "e\u0301-NFD-5"])
BAD = st.one_of(
    st.builds(lambda k: Line(k.encode() + b"\x00X", problem=NUL), KEY_TEXT),
    st.builds(lambda k, b: Line(k.encode() + b, problem=NOT_UTF8), KEY_TEXT,
              st.sampled_from([b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xc0\xaf", b"\xe2\x82"])),
    st.builds(lambda k, c: Line(k.encode() + c.encode() + b"Z", problem=f"contains control character U+{ord(c):04X}"),
              KEY_TEXT,
              st.sampled_from(["\x07", "\x1b", "\x7f", "\x85", "\r"])),
    st.builds(lambda k, c: Line(k.encode() + c.encode() + b"Z", problem=f"contains invisible character U+{ord(c):04X} (remove it)"),
              KEY_TEXT, st.sampled_from(["\u200b", "\u202e", "\u2066", "\ufeff", "\u00ad"])),
    # around the 1,024-character rule and the 4,160-byte read limit, and 100 KB
    st.builds(lambda n: Line(b"K" * n, problem=TOO_LONG), st.sampled_from([1025, 4159, 4160, 4161, 8321, 100 * 1024])),
    st.builds(lambda n: Line("键".encode() * n, problem=TOO_LONG), st.sampled_from([1025, 1387, 1388, 1389, 34 * 1024])),
    st.sampled_from([Line(b""), Line(b"   "), Line(b"\t")]),
)


@st.composite
def hostile_files(draw):
    keys = draw(st.lists(st.one_of(KEY_TEXT, UNICODE_KEY), unique=True, max_size=12))
    lines = [Line(k.encode(), key=k) for k in keys] + [Line(OLD[1].encode(), key=OLD[1])]  # one already stored
    lines += draw(st.lists(BAD, max_size=12))
    lines = draw(st.permutations(lines))
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    final = draw(st.sampled_from([b"", ending])) if lines[-1].raw else ending  # an empty last line needs its ending
    body = bom + ending.join(line.raw for line in lines) + final
    return lines, body


def assert_report_matches(report, lines: list[Line]) -> None:
    expected_invalid = [(n, line.problem) for n, line in enumerate(lines, 1) if line.problem]
    new = [unicodedata.normalize("NFC", line.key) for line in lines if line.key and line.key not in OLD]
    assert report.invalid_lines == expected_invalid
    assert report.invalid == len(expected_invalid)
    assert (report.imported, report.duplicate_stored) == (len(new), 1)
    assert report.blank == sum(1 for line in lines if not line.key and not line.problem)
    assert report.lines == len(lines)


def old_rows(product) -> list[tuple]:
    """The first three keys of `product` (the OLD ones) as stored: id, ciphertext, fingerprint, …"""
    first = list(Key.objects.filter(product=product).order_by("id").values_list("id", flat=True)[:3])
    return list(Key.objects.filter(pk__in=first).order_by("id")
                .values_list("id", "ciphertext", "fingerprint", "status", "batch_id"))


@pytest.mark.sqlite_only
@hyp_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=hostile_files())
def test_a_hostile_file_gets_a_precise_report_and_leaves_stored_keys_alone(make_product, case):
    # given a product with keys stored before
    lines, body = case
    product = make_product()
    import_lines(product, OLD)
    before = old_rows(product)
    # when the hostile file is imported
    report = import_bytes(product, body)
    # then every bad line is named with its reason, every good key stored once, the old ones as they were
    assert_report_matches(report, lines)
    assert old_rows(product) == before
    assert sorted(stored_keys(product)) == sorted(OLD + [unicodedata.normalize("NFC", line.key) for line in lines
                                                         if line.key and line.key not in OLD])


HOSTILE = (b"\xef\xbb\xbfGOOD-1\r\n"  # a BOM and CRLF: fine
           b"BAD\x00NUL\r\n"
           b"SURROGATE-\xed\xa0\x80\r\n"
           + b"L" * (100 * 1024) + b"\r\n"
           b"OLD-KEY-2\r\n"
           b"GOOD-2\r\n"
           b"BELL\x07\r\n")
PROBLEMS = [(2, NUL), (3, NOT_UTF8), (4, TOO_LONG), (7, "contains control character U+0007")]


@pytest.mark.django_db(transaction=True)
def test_kami_keys_import_reports_each_bad_line_and_keeps_stored_keys(make_product, tmp_path):
    # given
    product = make_product("hostile")
    import_lines(product, OLD)
    before = old_rows(product)
    path = tmp_path / "keys.txt"
    path.write_bytes(HOSTILE)
    # when
    out = io.StringIO()
    call_command("keys", "import", "hostile", str(path), stdout=out, stderr=io.StringIO())
    # then
    text = out.getvalue()
    assert "imported 2" in text and "invalid 4" in text and "already stored: lines 5" in text
    for line, problem in PROBLEMS:
        assert re.search(rf"\b{line}\b", text) and problem in text, (line, problem, text)
    assert old_rows(product) == before and sorted(stored_keys(product)) == sorted(OLD + ["GOOD-1", "GOOD-2"])


def test_the_back_office_upload_reports_each_bad_line_and_keeps_stored_keys(make_product):
    # given
    product = make_product("hostile")
    import_lines(product, OLD)
    before = old_rows(product)
    client = signed_in("owner")
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    # when the file is uploaded and the worker runs the job
    response = client.post(admin_url("keys/import/"), {"product": product.pk, "fmt": "auto", "column": "", "text": "",
                                                       "file": SimpleUploadedFile("keys.txt", HOSTILE)})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert import_jobs_run_due(limit=1) == 1
    # then the report names each bad line, without key text, and the stored keys are as they were
    job = ImportJob.objects.get()
    report = client.get(admin_url(f"keys/import/{job.pk}/report.csv"))
    rows = b"".join(report.streaming_content).decode().splitlines()
    assert rows[0] == "line,problem,detail"
    assert [tuple(r.split(",")[:2]) for r in rows[1:] if not r.startswith("5,")] == [(str(n), p) for n, p in PROBLEMS]
    assert "GOOD" not in "".join(rows) and "SURROGATE" not in "".join(rows)
    assert old_rows(product) == before and sorted(stored_keys(product)) == sorted(OLD + ["GOOD-1", "GOOD-2"])


# Found by the test above in kami.stock.importer, and fixed there.
@pytest.mark.sqlite_only
def test_a_bom_before_a_too_long_first_line_imports_nothing_of_that_line(make_product):
    report = import_bytes(make_product(), b"\xef\xbb\xbf" + b"K" * 4170 + b"\nNEXT\n")
    assert (report.invalid_lines, report.imported, report.lines) == ([(1, TOO_LONG)], 1, 2)


@pytest.mark.sqlite_only
def test_a_gzip_file_is_refused_not_imported_as_keys(make_product):
    draw = random.Random(1)
    body = gzip.compress("\n".join(f"KEY-{draw.getrandbits(64):016X}" for _ in range(20000)).encode(), mtime=0)
    product = make_product()
    with pytest.raises(BadInput, match=r"compressed \(gzip\).*unpack it"):
        import_bytes(product, body)
    assert Key.objects.filter(product=product).count() == 0


@pytest.mark.sqlite_only
@pytest.mark.parametrize("char", ["\u200b", "\u202e", "\ufeff", "\u2066"])
def test_an_invisible_character_inside_a_key_is_reported(make_product, char):
    report = import_lines(make_product(), ["GOOD-1", f"AB{char}CD"])
    assert report.imported == 1 and report.invalid_lines and report.invalid_lines[0][0] == 2
