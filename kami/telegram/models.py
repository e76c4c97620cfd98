"""The bot's own tables: its settings (token encrypted), the order each chat made, each chat's
step in a purchase, the updates already handled (Telegram redelivers on a failed webhook), and
Telegram's ids for the product pictures the bot has uploaded."""
from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class BotSettings(models.Model):
    """One row (pk 1), written by `kami telegram set`. The token is stored encrypted (AES-GCM,
    the data key outside the database), like a gateway's secrets."""

    token_key_id = models.CharField(verbose_name=_("key id"), max_length=32, blank=True, default="")
    token_ciphertext = models.BinaryField(verbose_name=_("token (encrypted)"), blank=True, default=b"")
    webhook = models.BooleanField(verbose_name=_("webhook mode"), default=False)
    admins = models.CharField(verbose_name=_("admin chat ids"), max_length=500, blank=True, default="")

    class Meta:
        verbose_name = _("Telegram bot settings")


class TelegramOrder(models.Model):
    """The Telegram user and chat an order was made from: only that user sees it in the bot."""

    order = models.OneToOneField("orders.Order", verbose_name=_("order"), on_delete=models.CASCADE,
                                 related_name="telegram")
    user_id = models.BigIntegerField(verbose_name=_("Telegram user id"), db_index=True)
    chat_id = models.BigIntegerField(verbose_name=_("Telegram chat id"))

    class Meta:
        verbose_name = _("Telegram order")


class BotChat(models.Model):
    """A buyer's step in a purchase (product, quantity, then email and gateway)."""

    user_id = models.BigIntegerField(verbose_name=_("Telegram user id"), unique=True)
    state = models.JSONField(verbose_name=_("state"), default=dict, blank=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Telegram chat")


class SeenUpdate(models.Model):
    """update_id is unique: a redelivered update finds its row and is skipped."""

    update_id = models.BigIntegerField(verbose_name=_("update id"), unique=True)
    at = models.DateTimeField(verbose_name=_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Telegram update")


class PhotoFileId(models.Model):
    """Telegram's file_id for a product picture this bot uploaded once: later views send the id
    instead of the file. Per bot (a file_id works only for the bot that received it) and per picture
    file (its name is a hash of its content: a new picture is a new row)."""

    bot_id = models.BigIntegerField(verbose_name=_("bot id"))
    picture = models.CharField(verbose_name=_("picture file"), max_length=255)
    file_id = models.CharField(verbose_name=_("Telegram file id"), max_length=255)

    class Meta:
        verbose_name = _("Telegram photo id")
        constraints = [models.UniqueConstraint(fields=["bot_id", "picture"], name="telegram_photo_once_per_bot")]
