"""Incident follow-ups: the owner's open items on their Home, a DM when one is overdue, and
marking one done. (They are added when an incident is resolved: `incidents.resolve`.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, NotFound
from bot.models import FollowUpStatus, Incident, IncidentFollowUp, utcnow
from bot.render import renderer
from bot.scheduler import claim_once, sweep
from bot.services import home
from bot.services.audit import record_event
from bot.services.incidents import follow_up_record
from bot.services.records import lock

SHOWN = 6
# Overdue DMs per sweep round: a backlog is worked through in later rounds, never all at once.
BATCH = 200


def open_for(session: Session, team_id: str, user_id: str,
             shown: int = SHOWN) -> tuple[list[IncidentFollowUp], int]:
    """The person's open follow-ups, the soonest due first (undated last), and how many."""
    mine = (IncidentFollowUp.team_id == team_id, IncidentFollowUp.owner == user_id,
            IncidentFollowUp.status == FollowUpStatus.OPEN)
    total = session.scalar(select(func.count()).where(*mine)) or 0
    if not total:
        return [], 0
    items = session.scalars(
        select(IncidentFollowUp).where(*mine)
        .order_by(IncidentFollowUp.due_date.is_(None), IncidentFollowUp.due_date,
                  IncidentFollowUp.id).limit(shown)).all()
    return list(items), total


def complete(session: Session, team_id: str, follow_up_id: int, actor: str,
             now: datetime | None = None) -> IncidentFollowUp:
    """Mark a follow-up done (its owner, or anyone when it has none); a second click is a
    Conflict that says so."""
    item = session.get(IncidentFollowUp, follow_up_id)
    if item is None or item.team_id != team_id:
        raise NotFound("That follow-up no longer exists.")
    lock(session, item)
    if item.status == FollowUpStatus.DONE:
        raise Conflict(f"Follow-up {item.ref} is already done.")
    if item.owner and item.owner != actor:
        raise Conflict(f"Follow-up {item.ref} belongs to <@{item.owner}>: only they can mark "
                       f"it done.", mentions=[item.owner])
    before = follow_up_record(item)
    item.status = FollowUpStatus.DONE
    item.done_at, item.done_by = now or utcnow(), actor
    record_event(session, actor=actor, action="incident.follow_up_done", entity=item.incident,
                 project_id=item.incident.project_id, before=before,
                 after=follow_up_record(item))
    home.queue_home_refresh(session, team_id, [actor, item.owner])
    return item


@sweep("incident_follow_ups_overdue")
def remind_overdue_follow_ups(session: Session, now: datetime) -> bool:
    """DM the owner of each open follow-up past its due date, once."""
    due = select(IncidentFollowUp).join(Incident).where(
        IncidentFollowUp.status == FollowUpStatus.OPEN, IncidentFollowUp.owner.is_not(None),
        IncidentFollowUp.due_date < now.date(), IncidentFollowUp.overdue_notified_at.is_(None))
    items = list(session.scalars(due.order_by(IncidentFollowUp.id).limit(BATCH)))
    for item in items:
        item.overdue_notified_at = now
        # Another replica's sweep at the same moment may see it too: one DM all the same.
        if not claim_once(session, f"follow-up:{item.id}:overdue:{item.due_date}"):
            continue
        outbox.post_message(session, item.team_id, str(item.owner),
                            renderer.message("incident/follow_up_overdue", f=item,
                                             i=item.incident, today=now.date()))
    return len(items) == BATCH  # a full batch: more may be waiting
