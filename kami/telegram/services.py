"""What the bot writes: its settings, the order-to-chat record, a chat's purchase step, and the
updates already handled."""
from __future__ import annotations

from django.db import IntegrityError, transaction

from kami.audit.services import audit_record
from kami.core.crypto import keyring
from kami.core.errors import BadInput
from kami.orders.models import Order
from kami.orders.services import PendingOwner
from kami.payments.models import GatewayAccount
from kami.payments.services import gateway_configure
from kami.telegram.config import AAD, bot_settings
from kami.telegram.models import BotChat, BotSettings, SeenUpdate, TelegramOrder


def bot_settings_set(*, token: str | None = None, webhook: bool | None = None, admins: str | None = None,
                     actor: str) -> None:
    """Store the bot's token (encrypted; '' turns the bot off), webhook mode and admin chat ids."""
    row = bot_settings()
    changed = []
    if token is not None:
        token = token.strip()
        if token and (":" not in token or len(token) > 200 or any(c.isspace() for c in token)):
            raise BadInput("token: not a bot token; copy it from @BotFather, it looks like 123456:ABC-…")
        row.token_key_id, row.token_ciphertext = keyring().encrypt(token, aad=AAD) if token else ("", b"")
        changed.append("token")
    if webhook is not None:
        row.webhook = webhook
        changed.append("webhook")
    if admins is not None:
        ids = [part for part in admins.replace(" ", "").split(",") if part]
        if any(not part.lstrip("-").isdigit() for part in ids):
            raise BadInput("admins: give numeric Telegram chat ids separated by commas, e.g. admins=12345,67890")
        row.admins = ",".join(ids)
        changed.append("admins")
    with transaction.atomic():  # the settings and their audit row together
        row.save()
        audit_record(actor=actor, action="telegram.set", obj_type="telegram", obj_id="bot", changed=changed)


def order_chat_record(*, order: Order, user_id: int, chat_id: int) -> None:
    TelegramOrder.objects.create(order=order, user_id=user_id, chat_id=chat_id)


def order_owner(*, user_id: int, chat_id: int) -> PendingOwner:
    """A bot order's owner for checkout: the Telegram user. Their unpaid orders count against the
    per-email limit (KAMI_PENDING_LIMIT_EMAIL) whether or not they gave an email, and the
    order-to-chat record is written in the order's own transaction."""
    return PendingOwner(lock=f"pending-telegram:{user_id}",
                        mine=lambda pending: pending.filter(telegram__user_id=user_id),
                        link=lambda order: order_chat_record(order=order, user_id=user_id, chat_id=chat_id))


def chat_state_set(*, user_id: int, state: dict) -> None:
    BotChat.objects.update_or_create(user_id=user_id, defaults={"state": state})


def chat_state_get(*, user_id: int) -> dict:
    row = BotChat.objects.filter(user_id=user_id).first()
    return dict(row.state) if row else {}


def update_first_seen(*, update_id: int) -> bool:
    """True the first time an update id is seen; False for a redelivery."""
    try:
        with transaction.atomic():  # a savepoint: the duplicate's IntegrityError leaves the caller usable
            SeenUpdate.objects.create(update_id=update_id)
        return True
    except IntegrityError:
        return False


STARS = "stars"


def stars_set(*, rate: str, token: str, actor: str) -> None:
    """Sell for Telegram Stars at `rate` Stars per unit of the shop's currency ('' stops it): the
    stars gateway, configured with this bot's token (its payments arrive to this bot)."""
    if rate.strip():
        gateway_configure(name=STARS, values={"stars_per_unit": rate.strip(), "bot_token": token}, enable=True,
                          actor=actor)
    elif GatewayAccount.objects.filter(name=STARS).exists():
        gateway_configure(name=STARS, values={}, enable=False, actor=actor)


def stars_token_follow(*, token: str, actor: str) -> None:
    """A new bot token: the Stars gateway takes it too (its invoices and payments are this bot's)."""
    if token and GatewayAccount.objects.filter(name=STARS).exists():
        gateway_configure(name=STARS, values={"bot_token": token}, actor=actor)


def bot_token_key_ids() -> list[str]:
    """The data key id sealing the stored bot token (none when the token is not stored)."""
    return list(BotSettings.objects.exclude(token_key_id="").values_list("token_key_id", flat=True))


def bot_token_reseal(target: str) -> int:
    """Seal the stored bot token with the data key `target` (the data-key rotation); 1 if it moved."""
    with transaction.atomic():  # the token: read locked, sealed again, written
        row = BotSettings.objects.select_for_update().exclude(token_key_id="").exclude(token_key_id=target).first()
        if row is None:
            return 0
        ring = keyring()
        token = ring.decrypt(row.token_key_id, bytes(row.token_ciphertext), aad=AAD)
        key_id, blob = ring.encrypt(token.reveal(), aad=AAD)
        return BotSettings.objects.filter(pk=row.pk).update(token_key_id=key_id, token_ciphertext=blob)
