"""Custom fields: what a product asks the buyer at checkout (a game account, a phone number to
top up…). The merchant defines them on the product; the buyer's answers are checked here, on
the server, and kept on the order (Order.custom_values)."""
from __future__ import annotations

import re

from django.db import transaction
from django.utils.translation import gettext

from kami.audit.services import audit_record
from kami.catalog.models import Product
from kami.core.errors import BadInput

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_FIELDS = 10
LABEL_MAX = 100
DEFAULT_MAX_LENGTH, MAX_LENGTH_CAP = 100, 1000


def _field_clean(i: int, field: object, seen: set[str]) -> dict:
    where = f"custom field {i}"
    if not isinstance(field, dict):
        raise BadInput(f"{where}: expected an object with name, label, required, max_length")
    name = field.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BadInput(f"{where}: name {name!r} must be 1-32 of a-z, 0-9, _ starting with a letter (e.g. game_id)")
    if name in seen:
        raise BadInput(f"{where}: name {name!r} is used twice; each field needs its own name")
    seen.add(name)
    label = field.get("label", "")
    if not isinstance(label, str) or not label.strip() or len(label.strip()) > LABEL_MAX:
        raise BadInput(f"{where} ({name}): label must be 1 to {LABEL_MAX} characters; it is shown to the buyer as given")
    required = field.get("required", True)
    if not isinstance(required, bool):
        raise BadInput(f"{where} ({name}): required must be true or false")
    max_length = field.get("max_length", DEFAULT_MAX_LENGTH)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 <= max_length <= MAX_LENGTH_CAP:
        raise BadInput(f"{where} ({name}): max_length must be a whole number from 1 to {MAX_LENGTH_CAP}")
    return {"name": name, "label": label.strip(), "required": required, "max_length": max_length}


def custom_fields_clean(fields: object) -> list[dict]:
    """A product's field definitions, checked and in canonical shape; BadInput names the entry."""
    if fields is None:
        return []
    if not isinstance(fields, (list, tuple)):
        raise BadInput("custom fields: expected a list of {name, label, required, max_length}")
    if len(fields) > MAX_FIELDS:
        raise BadInput(f"custom fields: at most {MAX_FIELDS} per product")
    seen: set[str] = set()
    return [_field_clean(i, field, seen) for i, field in enumerate(fields, start=1)]


def product_custom_fields_set(*, product: Product, fields: object, actor: str, ip: str = "") -> Product:
    """Replace the fields `product` asks at checkout (audited). Orders keep the answers they got."""
    clean = custom_fields_clean(fields)
    with transaction.atomic():  # the change and its audit row together
        Product.objects.filter(pk=product.pk).update(custom_fields=clean)
        product.custom_fields = clean
        audit_record(actor=actor, action="product_custom_fields", obj_type="product", obj_id=product.pk, ip=ip,
                     slug=product.slug, fields=[f["name"] for f in clean])
    return product


def _single_line(text: str) -> bool:
    return all(c.isprintable() for c in text)


def custom_values_clean(*, product: Product, values: object) -> tuple[dict, dict]:
    """(answers, errors) for the buyer's `values` ({name: text}). Errors are keyed
    `custom_values.<name>` and translated; labels appear as the merchant wrote them."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        return {}, {"custom_values": "custom_values must be an object of {name: text}"}
    fields = product.custom_fields or []
    unknown = sorted(set(values) - {f["name"] for f in fields})
    errors: dict = {}
    if unknown:
        errors["custom_values"] = (f"unknown field(s) {', '.join(map(str, unknown))[:200]}; this product asks for: "
                                   f"{', '.join(f['name'] for f in fields) or 'nothing'}")
    clean = {}
    for field in fields:
        name, label = field["name"], field["label"]
        value = values.get(name, "")
        if not isinstance(value, str) or not _single_line(value):
            errors[f"custom_values.{name}"] = gettext("%(label)s must be a single line of text.") % {"label": label}
            continue
        value = value.strip()
        if not value:
            if field["required"]:
                errors[f"custom_values.{name}"] = gettext("%(label)s is required.") % {"label": label}
            continue
        if len(value) > field["max_length"]:
            errors[f"custom_values.{name}"] = gettext("%(label)s: at most %(max)s characters.") % {
                "label": label, "max": field["max_length"]}
            continue
        clean[name] = value
    return clean, errors
