"""The delivery queue page: who may read it, who may act, and that retry-now and mark-handled
go through the delivery services (state change plus audit row)."""
from __future__ import annotations

import pytest

from kami.audit.models import AuditLog
from kami.core import clock
from kami.delivery.models import OutboxMessage
from tests.backoffice.staffing import admin_url, signed_in

pytestmark = pytest.mark.django_db

ROLES = ("owner", "operator", "support")
S = OutboxMessage.Status


def message(status: str, n: int = 0, **fields) -> OutboxMessage:
    now = clock.now()
    fields.setdefault("attempts", 8 if status == S.MANUAL else 1)
    return OutboxMessage.objects.create(kind="order_keys", channel="email", target=f"buyer{n}@example.com",
                                        dedupe_key=f"test:{status}:{n}", status=status, next_attempt_at=now,
                                        created_at=now, **fields)


@pytest.mark.parametrize("role,expected", [("owner", 200), ("operator", 200), ("support", 200)])
def test_reading_the_queue_per_role(role, expected):
    message(S.MANUAL, last_error="SMTP 550 mailbox unavailable")
    client = signed_in(role, f"{role}-q")
    page = client.get(admin_url("deliveries/?tab=manual"))
    assert page.status_code == expected
    html = page.content.decode()
    assert "SMTP 550 mailbox unavailable" in html
    # the buyer's address whole only for a role that may reveal keys (kami.backoffice.perms.buyer_email_for)
    shown = "buyer0@example.com" if role == "owner" else "b***@example.com"
    assert shown in html and ("buyer0@example.com" in html) == (role == "owner")
    # support reads but may not act: no action forms are offered to it
    assert ("Mark handled" in html or "标记为已处理" in html) is (role != "support")


def test_an_account_without_a_role_cannot_read_the_queue():
    from django.contrib.auth.models import Group

    client = signed_in("support", "s-gone")
    from django.contrib.auth import get_user_model

    get_user_model().objects.get(username="s-gone").groups.set([])
    assert Group.objects.filter(name="support").exists()
    assert client.get(admin_url("deliveries/")).status_code == 403


def test_tabs_show_their_rows():
    # "retrying": failed with attempts left; "failed": failed past the (shortened) schedule
    rows = {"pending": message(S.PENDING), "retrying": message(S.FAILED, 1, attempts=1),
            "failed": message(S.FAILED, 2, attempts=99), "manual": message(S.MANUAL), "sent": message(S.SENT)}
    client = signed_in("operator", "op-tabs")
    shown = {}
    for tab in ("pending", "retrying", "failed", "manual"):
        html = client.get(admin_url(f"deliveries/?tab={tab}")).content.decode()
        shown[tab] = {name for name, row in rows.items() if f'id="delivery-{row.pk}"' in html}
    assert shown["pending"] == {"pending"} and shown["manual"] == {"manual"} and shown["retrying"] == {"retrying"}
    # the selector decides whether "failed" also lists the rows still retrying
    assert shown["failed"] in ({"failed"}, {"failed", "retrying"})


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", True), ("support", False)])
def test_retry_now_per_role(role, allowed):
    row = message(S.MANUAL)
    client = signed_in(role, f"{role}-retry")
    response = client.post(admin_url(f"deliveries/{row.pk}/retry/"), {"tab": "manual"})
    row.refresh_from_db()
    if allowed:
        assert response.status_code == 302 and response["Location"].endswith("deliveries/?tab=manual")
        assert row.status == S.PENDING
        entry = AuditLog.objects.get(action="delivery.retry")
        assert entry.actor == f"{role}-retry" and entry.ip == "10.1.1.1"
    else:
        assert response.status_code == 403 and row.status == S.MANUAL
        assert not AuditLog.objects.filter(action="delivery.retry").exists()


@pytest.mark.parametrize("role,allowed", [("owner", True), ("operator", True), ("support", False)])
def test_mark_handled_per_role(role, allowed):
    row = message(S.FAILED)
    client = signed_in(role, f"{role}-close")
    response = client.post(admin_url(f"deliveries/{row.pk}/handled/"), {"note": "sent the link by WeChat", "tab": "failed"})
    row.refresh_from_db()
    if allowed:
        assert response.status_code == 302
        assert (row.status, row.note, row.handled_by) == (S.HANDLED, "sent the link by WeChat", f"{role}-close")
    else:
        assert response.status_code == 403 and row.status == S.FAILED


def test_actions_are_post_only_and_errors_are_shown():
    row = message(S.SENT)
    client = signed_in("operator", "op-errors")
    assert client.get(admin_url(f"deliveries/{row.pk}/retry/")).status_code == 405
    assert client.get(admin_url(f"deliveries/{row.pk}/handled/")).status_code == 405
    page = client.post(admin_url(f"deliveries/{row.pk}/retry/"), {"tab": "pending"}, follow=True)
    assert "already sent" in page.content.decode().lower()
    failed = message(S.FAILED, 1)
    page = client.post(admin_url(f"deliveries/{failed.pk}/handled/"), {"note": "  "}, follow=True)
    assert "say what was done" in page.content.decode().lower()
    failed.refresh_from_db()
    assert failed.status == S.FAILED
    page = client.post(admin_url("deliveries/999999/retry/"), follow=True)
    assert "no delivery #999999" in page.content.decode().lower()  # the admin capitalises messages
