"""keys_generate: CSPRNG keys over a readable alphabet, refused when too easy to guess."""
from __future__ import annotations

import re
import unicodedata

import pytest

from kami.audit.models import AuditLog
from kami.core.errors import BadInput
from kami.stock.generator import ALPHABET, DEFAULT_PATTERN, pattern_bits, pattern_compile
from kami.stock.models import ImportBatch, Key
from kami.stock.services import keys_generate
from kami.stock.vault import key_fingerprint
from tests.stock.helpers import import_lines, stored_keys


def test_alphabet_has_no_look_alikes_and_five_bits_per_symbol():
    assert len(ALPHABET) == 32 == len(set(ALPHABET))
    assert not set("01OI") & set(ALPHABET)
    assert pattern_bits(DEFAULT_PATTERN) == 80


def test_pattern_keeps_literals_and_fills_each_x():
    draw = pattern_compile("VIP-{XXXX}-中文-XXXX")
    keys = set(draw(200))
    symbol = f"[{ALPHABET}]"
    assert all(re.fullmatch(f"VIP-{{{symbol}{{4}}}}-中文-{symbol}{{4}}", k) for k in keys)
    assert len(keys) == 200


def test_symbols_are_spread_over_the_whole_alphabet():
    draw = pattern_compile("X" * 64)
    seen = "".join(draw(100))
    assert set(seen) == set(ALPHABET)


@pytest.mark.parametrize("pattern", ["XXXX-XXX", "XXXXXXX", "ABCD-EFGH-1234-5678", "xxxxxxxxxxxx"])
def test_patterns_under_40_bits_are_refused(pattern):
    with pytest.raises(BadInput, match="bits of randomness; use at least 8 X"):
        pattern_compile(pattern)


@pytest.mark.parametrize("pattern", ["", " XXXXXXXX", "XXXX\x00XXXX", "X" * 1025])
def test_malformed_patterns_are_refused(pattern):
    with pytest.raises(BadInput, match="--pattern"):
        pattern_compile(pattern)


def test_forty_bits_is_enough():
    assert [len(key) for key in pattern_compile("XXXX-XXXX")(3)] == [9, 9, 9]


def test_a_symbol_composing_with_a_literal_mark_comes_out_normalised():
    # given: a combining acute accent after an X (the pattern itself is NFC: no precomposed X́)
    draw = pattern_compile("X\u0301XXXXXXXX")
    # when
    keys = draw(300)
    # then: "Á" and the like are stored as the import would store them
    assert all(unicodedata.is_normalized("NFC", key) for key in keys)
    assert any(len(key) == 9 for key in keys)  # A, E, U… composed with the accent


@pytest.mark.django_db(transaction=True)
def test_generate_stores_count_unique_keys_and_audits(make_product):
    # given
    product = make_product()
    # when
    report = keys_generate(product=product, count=2500, actor="alice", batch_size=1000)
    # then
    keys = stored_keys(product)
    assert report.imported == len(keys) == len(set(keys)) == 2500
    assert all(re.fullmatch(f"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{3}}", k) for k in keys)
    batch = ImportBatch.objects.get()
    assert batch.imported == 2500 and batch.source == f"generated {DEFAULT_PATTERN}"
    audit = AuditLog.objects.get(action="keys.generate")
    assert (audit.actor, audit.detail["imported"], audit.detail["bits"]) == ("alice", 2500, 80)


@pytest.mark.django_db(transaction=True)
def test_a_collision_is_skipped_and_drawn_again(make_product, monkeypatch):
    # given: the stored key the generator's first draws will hit (a scripted random source:
    # at 40+ bits a real collision cannot be provoked)
    product = make_product()
    import_lines(product, ["AAAAAAAA"])
    draws = iter(["AAAAAAAA", "AAAAAAAA", "BBBBBBBB", "CCCCCCCC"])
    monkeypatch.setattr("kami.stock.generator.pattern_compile",
                        lambda pattern: lambda n: [next(draws) for _ in range(n)])
    # when
    report = keys_generate(product=product, count=2, pattern="XXXXXXXX", batch_size=2)
    # then
    assert report.imported == 2
    assert report.duplicates == 2
    assert stored_keys(product) == ["AAAAAAAA", "BBBBBBBB", "CCCCCCCC"]


@pytest.mark.django_db(transaction=True)
def test_generate_reports_progress_chunk_by_chunk_and_every_key_opens(make_product):
    # given
    product = make_product()
    seen = []
    # when
    report = keys_generate(product=product, count=2345, batch_size=1000,
                           on_progress=lambda r: seen.append(r.imported))
    # then: one call per chunk, counts rising to the total; each key opens and fingerprints as imported
    assert seen == [1000, 2000, 2345]
    keys = stored_keys(product)
    assert len(keys) == report.imported == 2345
    fingerprints = set(Key.objects.filter(product=product).values_list("fingerprint", flat=True))
    assert fingerprints == {key_fingerprint(k) for k in keys}
    assert ImportBatch.objects.get().imported == 2345


@pytest.mark.django_db
@pytest.mark.parametrize("count", [0, -1, 1_000_001])
def test_count_out_of_range_is_refused(make_product, count):
    with pytest.raises(BadInput, match="--count"):
        keys_generate(product=make_product(), count=count)
    assert not Key.objects.exists()
