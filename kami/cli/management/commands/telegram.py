"""`kami telegram set token=… [webhook|poll] [admins=ID,…] [stars=RATE]`, `kami telegram poll [--once]` and
`kami telegram status`: the bot storefront (docs/telegram.md). The token is stored encrypted and
never printed; `token=` (empty) turns the bot off."""
from __future__ import annotations

from kami.cli.base import KamiCommand
from kami.core.errors import BadInput
from kami.payments.models import GatewayAccount
from kami.telegram.config import admin_ids, bot_token, webhook_mode
from kami.telegram.runner import poll, webhook_register, webhook_url
from kami.telegram.services import bot_settings_set, stars_set, stars_token_follow

SETTINGS = ("token", "admins", "stars")
MODES = ("webhook", "poll")


class Command(KamiCommand):
    help = ("Run the shop's Telegram bot: `kami telegram set token=123:ABC webhook`, or `kami telegram poll` "
            "without a public URL.")

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{set,poll,status}")
        put = actions.add_parser("set", help="store the bot token (encrypted), the mode and the admin chat ids")
        put.add_argument("values", nargs="*", metavar="token=…|admins=…|stars=…|webhook|poll")
        run = actions.add_parser("poll", help="long-poll Telegram for updates (no public URL needed)")
        run.add_argument("--once", action="store_true", help="one round of updates, then exit")
        actions.add_parser("status", help="whether the bot is on, its mode and admin chat ids (never the token)")

    def handle(self, *args, action, **options):
        if action == "set":
            self._set(options["values"])
        elif action == "poll":
            self._poll(once=options["once"])
        else:
            self._status()

    def _set(self, words: list[str]) -> None:
        values, modes = {}, [w for w in words if w in MODES]
        for word in (w for w in words if w not in MODES):
            key, sep, value = word.partition("=")
            if not sep or key not in SETTINGS:
                raise BadInput(f"{key[:20]!r}: give token=…, admins=ID,ID, stars=RATE, webhook or poll")
            values[key] = value
        if len(modes) > 1:
            raise BadInput("give webhook or poll, not both")
        if not values and not modes:
            raise BadInput("nothing to change: kami telegram set token=123456:ABC… [webhook|poll] [admins=ID,…]")
        bot_settings_set(token=values.get("token"), admins=values.get("admins"),
                         webhook=(modes[0] == "webhook") if modes else None, actor="cli")
        token = bot_token()
        if "stars" in values:
            if not token and values["stars"].strip():
                raise BadInput("stars: set the bot's token first (token=…): Stars are paid to the bot")
            stars_set(rate=values["stars"], token=token, actor="cli")
        elif "token" in values:
            stars_token_follow(token=token, actor="cli")
        self._status()
        if token and webhook_mode():
            self.stdout.write(f"telegram: webhook registered at {webhook_register(token=token)}")

    def _poll(self, *, once: bool) -> None:
        token = bot_token()
        if not token:
            raise BadInput("the Telegram bot is off: kami telegram set token=123456:ABC… first")
        self.stdout.write("telegram: polling for updates (Ctrl-C stops)" if not once else "telegram: one round of updates")
        try:
            handled = poll(token=token, once=once)
        except KeyboardInterrupt:
            return
        self.stdout.write(f"telegram: {handled} update(s) handled")

    def _status(self) -> None:
        if not bot_token():
            self.stdout.write("telegram: off (kami telegram set token=… turns it on)")
            return
        mode = f"webhook at {webhook_url()}" if webhook_mode() else "polling (run kami telegram poll)"
        admins = ", ".join(map(str, sorted(admin_ids()))) or "none"
        self.stdout.write(f"telegram: on, token set (stored encrypted); mode: {mode}; admin chat ids: {admins}")
        stars = GatewayAccount.objects.filter(name="stars", enabled=True).first()
        self.stdout.write(f"telegram: Stars: {stars.config.get('stars_per_unit')} per unit of the shop's currency"
                          if stars else "telegram: Stars: off (kami telegram set stars=RATE)")
