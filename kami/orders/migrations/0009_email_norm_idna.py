"""email_normalise now reads the domain as mail is sent to it (IDNA: NFKC, zero-width characters
dropped): orders stored before keep the old form (trimmed, lower-cased) until recomputed here, or a
lookup by `buyer@example.com` misses an order placed as `Buyer@ＥＸＡＭＰＬＥ.com`. Only emails
with non-ASCII characters can change; the rule is copied as it stands today (migrations are frozen)."""
from django.db import migrations


def _normalise(email: str) -> str:
    local, at, domain = email.strip().rpartition("@")
    if at:
        try:
            domain = domain.encode("idna").decode("idna")
        except UnicodeError:
            pass
    return f"{local}{at}{domain}".lower()


def recompute(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    changed = []
    for order in Order.objects.only("id", "email", "email_norm").iterator(chunk_size=2000):
        if not order.email.isascii() and order.email_norm != (norm := _normalise(order.email)):
            order.email_norm = norm
            changed.append(order)
    Order.objects.bulk_update(changed, ["email_norm"], batch_size=2000)


class Migration(migrations.Migration):

    dependencies = [("orders", "0008_coupon_uses_at_payment")]

    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
