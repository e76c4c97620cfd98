"""Coupon uses are counted at payment from now on (issue 16), not at order creation.

Orders still `pending` at the upgrade took a use when they were created; under the new rule they
take it when they are paid, and an expiring order gives nothing back. So each coupon gives back
the uses its pending orders hold, once, here: `used` then counts the orders that were paid. A
pending order paid later takes its use at payment like any new one — or is held for a person if
the coupon ran out meanwhile — and one that expires unpaid leaves `used` alone. Run it with the
shop stopped, as every upgrade (a payment landing mid-migration would otherwise count twice).
"""
from django.db import migrations
from django.db.models import Count


def _pending_per_coupon(Order):
    return (Order.objects.filter(status="pending", coupon__isnull=False)
            .values("coupon_id").annotate(n=Count("id")).values_list("coupon_id", "n"))


def give_back_pending_uses(apps, schema_editor):
    Order, Coupon = apps.get_model("orders", "Order"), apps.get_model("catalog", "Coupon")
    for coupon_id, n in list(_pending_per_coupon(Order)):
        used = Coupon.objects.get(pk=coupon_id).used  # in Python: MariaDB's unsigned `used - n` must not go below 0
        Coupon.objects.filter(pk=coupon_id).update(used=max(0, used - n))


def take_pending_uses_again(apps, schema_editor):
    """Back to counting at creation: pending orders hold a use again, never past a limit."""
    Order, Coupon = apps.get_model("orders", "Order"), apps.get_model("catalog", "Coupon")
    for coupon_id, n in list(_pending_per_coupon(Order)):
        coupon = Coupon.objects.get(pk=coupon_id)
        room = n if coupon.usage_limit is None else max(0, min(n, coupon.usage_limit - coupon.used))
        Coupon.objects.filter(pk=coupon_id).update(used=coupon.used + room)


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0007_product_picture"),
        ("orders", "0007_email_norm"),
    ]

    operations = [
        migrations.RunPython(give_back_pending_uses, take_pending_uses_again, elidable=False),
    ]
