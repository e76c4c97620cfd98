from __future__ import annotations

from kami.audit.models import AuditLog
from kami.core import clock


def audit_record(*, actor: str, action: str, obj_type: str = "", obj_id: object = "", ip: str = "", **detail) -> AuditLog:
    return AuditLog.objects.create(
        at=clock.now(), actor=actor or "unknown", action=action, object_type=obj_type,
        object_id=str(obj_id), ip=ip, detail=detail,
    )
