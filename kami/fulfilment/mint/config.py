"""A dynamic product's mint settings: the URL Kami calls and the secret it signs with.

The secret is a Standard Webhooks secret (`whsec_…`, kami.webhooks.signing), made here, returned
once and kept only sealed with the data key under its own AAD — signing needs it back. The
data-key rotation moves it (registered in kami.fulfilment.apps). Every change is audited."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core.crypto import keyring
from kami.core.errors import BadInput
from kami.core.httpurl import http_url_checked
from kami.webhooks.signing import secret_new

AAD = b"kami:product-mint-secret"


@dataclass(frozen=True)
class MintSettings:
    product: Product
    secret: str | None  # a secret made by this change, shown once; None when the old one stays


def product_mint_set(*, product: Product, url: str, actor: str, ip: str = "") -> MintSettings:
    """Set (or, with "", clear) the mint URL of a dynamic product; a secret is made the first
    time, and returned once. Orders paid while no URL is set wait, and the merchant is alerted."""
    url = _url(product, url)
    with transaction.atomic():  # the product row locked: its settings and the audit row together
        product = Product.objects.select_for_update().get(pk=product.pk)
        secret = None if product.mint_secret_key_id or not url else secret_new()
        fields = {"mint_url": url}
        if secret:
            fields["mint_secret_key_id"], fields["mint_secret_ciphertext"] = mint_secret_seal(secret)
        Product.objects.filter(pk=product.pk).update(**fields)
        audit_record(actor=actor, action="product.mint_set", obj_type="product", obj_id=product.slug, ip=ip,
                     host=urlsplit(url).hostname or "", new_secret=bool(secret))
    product.refresh_from_db()
    return MintSettings(product=product, secret=secret)


def product_mint_secret_new(*, product: Product, actor: str, ip: str = "") -> MintSettings:
    """Replace the signing secret (returned once). From now on every request, retries included,
    is signed with the new one: give it to the merchant's system first-thing."""
    _dynamic(product, "mint_secret")
    secret = secret_new()
    key_id, blob = mint_secret_seal(secret)
    with transaction.atomic():  # the new secret and its audit row together
        Product.objects.filter(pk=product.pk).update(mint_secret_key_id=key_id, mint_secret_ciphertext=blob)
        audit_record(actor=actor, action="product.mint_secret_new", obj_type="product", obj_id=product.slug, ip=ip)
    product.refresh_from_db()
    return MintSettings(product=product, secret=secret)


def mint_secret_seal(secret: str) -> tuple[str, bytes]:
    return keyring().encrypt(secret, aad=AAD)


def mint_secret_open(product: Product) -> str:
    return keyring().decrypt(product.mint_secret_key_id, bytes(product.mint_secret_ciphertext), aad=AAD).reveal()


def mint_secret_key_ids() -> list[str]:
    """The data key id of every stored mint secret (for the data-key rotation)."""
    return list(Product.objects.exclude(mint_secret_key_id="").values_list("mint_secret_key_id", flat=True))


def mint_secrets_reseal(target: str) -> int:
    """Seal every mint secret with the data key `target`; how many moved. The secrets stay the same."""
    moved = 0
    for pk in Product.objects.exclude(mint_secret_key_id__in=("", target)).values_list("pk", flat=True):
        with transaction.atomic():  # one product: read locked, sealed again, written
            product = Product.objects.select_for_update().get(pk=pk)
            if product.mint_secret_key_id in ("", target):
                continue
            key_id, blob = mint_secret_seal(mint_secret_open(product))
            Product.objects.filter(pk=pk).update(mint_secret_key_id=key_id, mint_secret_ciphertext=blob)
            moved += 1
    return moved


def _dynamic(product: Product, field: str) -> None:
    if product.kind != Product.Kind.DYNAMIC:
        raise BadInput(f"{field}: {product.slug} is a {product.kind} product; only a dynamic product mints its keys "
                       "(create one with `kami product add SLUG --kind dynamic …`)", fields={field: "not dynamic"})


def _url(product: Product, url: str) -> str:
    _dynamic(product, "mint_url")
    return http_url_checked(url, field="mint_url", example="https://erp.example.com/kami/mint")
