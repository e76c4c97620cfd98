"""`{{ order.email|buyer_email:user }}`: a buyer's email as this staff member may read it
(kami.backoffice.perms.buyer_email_for), for every back-office template that shows one."""
from __future__ import annotations

from django import template

from kami.backoffice.perms import buyer_email_for

register = template.Library()


@register.filter
def buyer_email(email: str, user) -> str:
    return buyer_email_for(user, email)
