"""What the bot reads: a Telegram user's own orders, and never anyone else's."""
from __future__ import annotations

from django.db.models import QuerySet

from kami.orders.models import Order
from kami.telegram.models import TelegramOrder

CHANNEL = "telegram_chat"


def order_chat_recipients(order_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """Registered with the delivery layer: an order made in the bot also gets its keys in the
    chat. One read for all the orders a transaction fulfils."""
    chats = TelegramOrder.objects.filter(order_id__in=order_ids).values_list("order_id", "chat_id")
    return {order_id: [(CHANNEL, str(chat))] for order_id, chat in chats}


def user_orders(*, user_id: int, limit: int = 10) -> QuerySet[Order]:
    return (Order.objects.select_related("product").filter(telegram__user_id=user_id)
            .order_by("-created_at", "-id")[:limit])


def user_order(*, user_id: int, order_no: str) -> Order | None:
    """The order, only if this Telegram user made it; any other order looks like no order."""
    return Order.objects.select_related("product").filter(order_no=order_no[:32], telegram__user_id=user_id).first()
