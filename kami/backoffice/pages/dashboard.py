"""The back office's index: the dashboard (for view_dashboard holders) above the app list.

Charts are inline SVG drawn here as plain geometry (no script, no external asset, no inline
style: the page's CSP allows none); colours come from classes in backoffice/ops.css.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.urls import NoReverseMatch, reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from kami.backoffice.dashboard import COUNT_CAP, Dashboard, Sales, dashboard_get
from kami.backoffice.pages.api_tokens import may_manage_tokens
from kami.backoffice.perms import can
from kami.backoffice.site import site

CHART_W, CHART_H, AXIS_H = 600, 160, 18
STATUS_LABEL_W, STATUS_BAR_W, STATUS_ROW_H = 200, 260, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    label: str = ""  # text under (day chart) or beside (status chart) the bar
    value: str = ""

    @property
    def value_x(self) -> float:  # the number written just after a horizontal bar
        return round(self.x + self.width + 6, 1)

    @property
    def text_y(self) -> float:
        return round(self.y + self.height / 2 + 4, 1)

    @property
    def middle_x(self) -> float:
        return round(self.x + self.width / 2, 1)


def _scaled(value, top, room: float) -> float:
    return round(float(value) / float(top) * room, 1) if top else 0.0


def sales_bars(board: Dashboard, sales: Sales) -> list[Bar]:
    """One bar per day; the tallest day fills the chart; today is drawn in its own colour."""
    top = max(sales.amounts) or Decimal(1)
    step = CHART_W / len(board.days)
    bars = []
    for i, (day, amount, n) in enumerate(zip(board.days, sales.amounts, sales.counts)):
        height = max(_scaled(amount, top, CHART_H - 4), 1.0 if amount else 0.0)
        label = date_format(day, "j") if i % 5 == 4 or i == len(board.days) - 1 else ""
        bars.append(Bar(x=round(i * step + 2, 1), y=round(CHART_H - height, 1), width=round(step - 4, 1),
                        height=height, css="bo-bar bo-bar-today" if i == len(board.days) - 1 else "bo-bar",
                        title=_("%(day)s: %(amount)s %(currency)s, %(n)d order(s)") % {
                            "day": date_format(day, "Y-m-d"), "amount": amount, "currency": sales.currency, "n": n},
                        label=label))
    return bars


def status_bars(board: Dashboard) -> list[Bar]:
    top = max((n for _s, n in board.orders_by_status), default=0)
    bars = []
    for i, (status, n) in enumerate(board.orders_by_status):
        bars.append(Bar(x=STATUS_LABEL_W, y=i * STATUS_ROW_H + 4, width=_scaled(n, top, STATUS_BAR_W),
                        height=STATUS_ROW_H - 8, css=f"bo-bar bo-status-{status}", title=f"{status_label(status)}: {n}",
                        label=status_label(status), value=str(n)))
    return bars


def status_label(status: str) -> str:
    # A context of their own: the back office's catalogue comes last, and a bare "Refunded" is
    # already translated by other apps as something else ("refund amount").
    return {
        "pending": pgettext("order status", "Pending payment"), "fulfilled": pgettext("order status", "Fulfilled"),
        "awaiting_stock": pgettext("order status", "Awaiting stock"),
        "awaiting_manual": pgettext("order status", "Awaiting manual delivery"),
        "expired": pgettext("order status", "Expired"), "refunded": pgettext("order status", "Refunded"),
        "flagged": pgettext("order status", "Flagged"),
    }.get(status, status)


def _url(name: str, query: str = "") -> str:
    """A link to a page another part of the back office registers; "" while it does not exist."""
    try:
        return reverse(f"admin:{name}") + query
    except NoReverseMatch:
        return ""


def ops_links(user) -> list[tuple[str, str]]:
    """The operations pages this user may open, for the index page."""
    links = []
    if can(user, "handle_deliveries") or can(user, "resend_deliveries"):
        links.append((_("Delivery queue"), reverse("admin:deliveries")))
    if can(user, "manage_gateways"):
        links.append((_("Payment gateways"), reverse("admin:gateways")))
    if can(user, "manage_shop"):
        links.append((_("Shop settings"), reverse("admin:shop_settings")))
        links.append((_("Webhooks"), reverse("admin:webhooks")))
    if may_manage_tokens(user):
        links.append((_("API tokens"), reverse("admin:api_tokens")))
    return links


def dashboard_context(board: Dashboard) -> dict:
    orders = _url("orders_order_changelist")
    return {
        "board": board,
        "sales_charts": [{"sales": s, "bars": sales_bars(board, s)} for s in board.sales],
        "status_bars": status_bars(board),
        "status_chart_h": len(board.orders_by_status) * STATUS_ROW_H,
        "chart_w": CHART_W, "chart_h": CHART_H, "chart_full_h": CHART_H + AXIS_H, "label_y": CHART_H + AXIS_H - 4,
        "status_chart_w": STATUS_LABEL_W + STATUS_BAR_W + 60, "status_label_x": STATUS_LABEL_W - 6,
        "awaiting_stock_url": orders and orders + "?status__exact=awaiting_stock",
        "awaiting_manual_url": orders and orders + "?status__exact=awaiting_manual",
        "manual_url": reverse("admin:deliveries") + "?tab=manual",
        "failed_url": reverse("admin:deliveries") + "?tab=failed",
        "retrying_url": reverse("admin:deliveries") + "?tab=retrying",
        "count_cap": COUNT_CAP,
    }


def dashboard_index(request):
    """Served at the back office's root, in place of the plain app list (see admin/ops.py)."""
    extra = {"ops_links": ops_links(request.user)}
    if can(request.user, "view_dashboard"):
        extra["dashboard"] = dashboard_context(dashboard_get())
    response = site.index(request, extra_context=extra)
    response.template_name = "backoffice/dashboard/index.html"  # extends admin/index.html
    return response
