"""Key ciphertexts are bound to their product and fingerprint (issue 16): a ciphertext moved to
another row or product fails to open, loudly; rows sealed the old way still open and reseal."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from kami.audit.models import AuditLog
from kami.core.crypto import keyring
from kami.stock.models import Key
from kami.stock.services import key_reveal, keys_export, keys_reseal
from kami.stock.vault import SHARED_AAD, KeyMisplaced, key_fingerprint, key_open
from tests.stock.helpers import import_lines, stored_keys

pytestmark = pytest.mark.django_db


def _move_ciphertext(source: Key, target: Key) -> None:
    Key.objects.filter(pk=target.pk).update(key_id=source.key_id, ciphertext=source.ciphertext)


def _legacy_key(product, text: str) -> Key:
    """A row as stored before the binding: one constant AAD for every key."""
    key_id, blob = keyring().encrypt(text, aad=SHARED_AAD)
    return Key.objects.create(product=product, key_id=key_id, ciphertext=blob, fingerprint=key_fingerprint(text),
                              seal=Key.Seal.SHARED)


def test_a_ciphertext_moved_to_another_row_of_the_product_does_not_open(make_product):
    # given
    product = make_product()
    import_lines(product, ["CHEAP-1", "EXPENSIVE-2"])
    cheap, dear = Key.objects.filter(product=product).order_by("id")
    # when: the dear key's ciphertext is copied over the cheap one
    _move_ciphertext(dear, cheap)
    # then
    with pytest.raises(KeyMisplaced) as refused:
        key_open(Key.objects.get(pk=cheap.pk))
    assert f"key #{cheap.pk} ({cheap.fingerprint[:8]})" in str(refused.value)
    assert "restore this row from a backup" in str(refused.value)
    assert "EXPENSIVE" not in str(refused.value)
    assert key_open(Key.objects.get(pk=dear.pk)).reveal() == "EXPENSIVE-2"


def test_a_ciphertext_moved_to_another_product_does_not_open(make_product):
    # given
    cheap_product, dear_product = make_product(), make_product()
    import_lines(cheap_product, ["CHEAP-1"])
    import_lines(dear_product, ["EXPENSIVE-1"])
    cheap, dear = Key.objects.get(product=cheap_product), Key.objects.get(product=dear_product)
    # when: a ciphertext alone, then a whole row, moved into the cheap product
    _move_ciphertext(dear, cheap)
    Key.objects.filter(pk=dear.pk).update(product=cheap_product)
    # then
    for pk in (cheap.pk, dear.pk):
        with pytest.raises(KeyMisplaced, match=f"product #{cheap_product.pk} does not open"):
            key_open(Key.objects.get(pk=pk))
    with pytest.raises(KeyMisplaced):
        keys_export(product=cheap_product, status="all", out=io.StringIO(), actor="test")


def test_the_reveal_of_a_moved_key_fails_after_the_audit_row(make_product):
    # given
    product = make_product()
    import_lines(product, ["A-1", "B-2"])
    first, second = Key.objects.filter(product=product).order_by("id")
    _move_ciphertext(second, first)
    # when / then
    with pytest.raises(KeyMisplaced):
        key_reveal(key_pk=first.pk, actor="owner")
    assert AuditLog.objects.filter(action="keys.reveal", object_id=str(first.pk)).exists()


def test_rows_sealed_the_old_way_still_open_and_reseal_binds_them(make_product):
    # given: one old row beside one new
    product = make_product()
    old = _legacy_key(product, "OLD-KEY")
    import_lines(product, ["NEW-KEY"])
    assert stored_keys(product) == ["OLD-KEY", "NEW-KEY"]
    # when
    resealed = keys_reseal(product=product, actor="cli")
    # then: same plaintexts, every row bound, the old ciphertext gone, the run on record
    assert resealed == 1
    assert stored_keys(product) == ["OLD-KEY", "NEW-KEY"]
    row = Key.objects.get(pk=old.pk)
    assert row.seal == Key.Seal.BOUND and bytes(row.ciphertext) != bytes(old.ciphertext)
    assert keys_reseal(product=product, actor="cli") == 0
    assert AuditLog.objects.filter(action="keys.reseal", object_id=product.slug).count() == 2


def test_kami_keys_reseal_reseals_the_products_old_rows(make_product):
    # given
    product = make_product("steam")
    _legacy_key(product, "OLD-1")
    out = io.StringIO()
    # when
    call_command("keys", "reseal", "steam", stdout=out, stderr=io.StringIO())
    # then
    assert "resealed 1 keys of steam" in out.getvalue()
    assert list(Key.objects.values_list("seal", flat=True)) == [Key.Seal.BOUND]
    assert stored_keys(product) == ["OLD-1"]


def test_a_resealed_row_is_bound_too(make_product):
    # given: two old rows, resealed
    product = make_product()
    first, second = _legacy_key(product, "OLD-1"), _legacy_key(product, "OLD-2")
    keys_reseal(product=product, actor="cli")
    # when
    _move_ciphertext(Key.objects.get(pk=second.pk), first)
    # then
    with pytest.raises(KeyMisplaced):
        key_open(Key.objects.get(pk=first.pk))


def test_import_then_export_gives_back_the_same_keys(make_product):
    # given
    product = make_product()
    lines = ["AAAA-1111", "中文卡密-2", "🎉 emoji 3", "account\tpassword", "x" * 1024]
    import_lines(product, lines)
    out = io.StringIO()
    # when
    written = keys_export(product=product, out=out, actor="test")
    # then
    assert written == len(lines)
    assert out.getvalue() == "".join(f"{line}\n" for line in lines)
