"""The one way to append to the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import AuditEvent, Project, Referenced
from bot.services.refs import holds_audit


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: Referenced | Project,
    project_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append who did what to which record, with its state before and after."""
    event = AuditEvent(
        team_id=entity.team_id,
        project_id=project_id,
        actor=actor,
        action=action,
        entity_type=type(entity).__tablename__,  # type: ignore[attr-defined]
        entity_id=entity.id,  # type: ignore[attr-defined]
        entity_ref=entity.ref,
        before=before,
        after=after,
    )
    if not holds_audit(session, event):  # held while a record's number is being taken
        session.add(event)
    return event


# Fields every audit event carries anyway (who, when, which project), left out of snapshots.
BOOKKEEPING = frozenset({"project", "channel", "created_at", "updated_at", "created_by"})


def snapshot(record: dict[str, Any], *also_leave_out: str) -> dict[str, Any]:
    """A record (its export shape) as the audit log keeps it before and after a change."""
    return {key: value for key, value in record.items()
            if key not in BOOKKEEPING and key not in also_leave_out}


def history(session: Session, entity: Referenced) -> list[AuditEvent]:
    """The audit events of one record, oldest first."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.entity_type == type(entity).__tablename__,  # type: ignore[attr-defined]
                AuditEvent.entity_id == entity.id,  # type: ignore[attr-defined]
            )
            .order_by(AuditEvent.id)
        )
    )


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Names of the fields whose value differs between two snapshots."""
    before, after = before or {}, after or {}
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
