"""The merchant's side of the bot, for the configured admin chat ids only: stock per product,
today's sales, orders waiting for stock or a person, and the alerts sent to Telegram. Read-only:
changing anything stays in the back office and the CLI."""
from __future__ import annotations

from datetime import datetime, time

from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext

from kami.delivery.selectors import deliveries_list
from kami.orders.models import Order
from kami.orders.selectors import orders_awaiting_staff
from kami.stock.selectors import stock_summary
from kami.telegram.api import Bot

COMMANDS = ("stock", "today", "awaiting", "alerts")


def merchant_command(bot: Bot, chat_id: int, command: str) -> None:
    {"stock": _stock, "today": _today, "awaiting": _awaiting, "alerts": _alerts}[command](bot, chat_id)


def _stock(bot: Bot, chat_id: int) -> None:
    lines = [gettext("Stock (available / sold / awaiting):")]
    for row in stock_summary():
        mark = " ⚠" if row.low else ""
        lines.append(f"{row.product.slug}: {row.available} / {row.sold} / {row.awaiting}{mark}")
    bot.say(chat_id, "\n".join(lines))


def _today(bot: Bot, chat_id: int) -> None:
    start = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    sales = list(Order.objects.filter(paid_at__gte=start).values("currency")
                 .annotate(n=Count("id"), total=Sum("amount")).order_by("currency"))
    lines = [gettext("Paid today:")]
    lines += [f"{row['n']} × · {row['total']} {row['currency']}" for row in sales]
    if not sales:
        lines.append(gettext("no paid orders yet today"))
    bot.say(chat_id, "\n".join(lines))


def _awaiting(bot: Bot, chat_id: int) -> None:
    orders = list(orders_awaiting_staff()[:30])
    lines = [gettext("Waiting for stock or a person:")]
    lines += [f"{o.order_no} · {o.product.slug} × {o.quantity} · {o.get_status_display()}" for o in orders]
    if not orders:
        lines.append(gettext("nothing is waiting"))
    bot.say(chat_id, "\n".join(lines))


def _alerts(bot: Bot, chat_id: int) -> None:
    rows = [m for m in deliveries_list(status="sent", kind="admin_alert", limit=50) if m.channel == "telegram"][:10]
    lines = [gettext("Alerts sent to Telegram, newest first:")]
    lines += [f"{m.sent_at:%m-%d %H:%M} · {(m.payload or {}).get('subject', '')}" for m in rows]
    if not rows:
        lines.append(gettext("none yet"))
    bot.say(chat_id, "\n".join(lines))
