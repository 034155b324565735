"""Silences from Slack to Alertmanager and back, at the runtime edge: the database is read and
written in short transactions before and after each HTTP call, never across one, so a slow or
absent Alertmanager holds no lock and leaves nothing half-done."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.alertmanager_api import AlertmanagerClient, AlertmanagerError
from bot.database import Database
from bot.errors import Conflict, QuorumError
from bot.models import IncidentStatus, utcnow
from bot.services import incidents, silences

log = logging.getLogger("quorum.silences")
# A second silence that ends within this of a running one adds nothing (a double click).
SAME_WINDOW = timedelta(minutes=5)
EXPIRED_BY = "quorum"


class SilenceRefused(QuorumError):
    """Alertmanager did not make the silence: nothing was recorded."""


@dataclass(frozen=True)
class Silenced:
    ref: str
    silence_id: str
    ends_at: datetime
    until_resolved: bool


def _check_not_silenced(session: object, incident: object, request: silences.SilenceRequest,
                        now: datetime) -> None:
    running = silences.active_silence(session, incident, now)  # type: ignore[arg-type]
    if running is not None and running.ends_at >= request.ends_at - SAME_WINDOW:
        until = "until it is resolved" if running.until_resolved else \
            f"until {running.ends_at:%Y-%m-%d %H:%M} UTC"
        raise Conflict(f"{request.ref} is already silenced {until} (by <@{running.created_by}>).",
                       mentions=[running.created_by])


def silence_incident(db: Database, client: AlertmanagerClient | None, team_id: str,
                     incident_id: int, window: str, actor: str) -> Silenced:
    """Make the silence in Alertmanager, then record it; raises a QuorumError to tell the person
    why not (Alertmanager down or refusing: nothing is recorded)."""
    if client is None:
        raise SilenceRefused("Silencing from Slack is off: ALERTMANAGER_URL is not set.")
    now = utcnow()
    with db.session() as session:
        incident = incidents.get_by_id(session, incident_id, team_id)
        request = silences.request_silence(incident, window, actor, now)
        _check_not_silenced(session, incident, request, now)
    try:
        silence_id = client.create_silence(request.matchers, request.starts_at, request.ends_at,
                                           created_by=actor, comment=request.comment)
    except AlertmanagerError as exc:
        log.warning("silence for %s not made: %s", request.ref, exc.message)
        raise SilenceRefused(f"{exc.message}, so {request.ref} was not silenced. Nothing was "
                             f"changed; try again in a moment.") from None
    try:
        with db.session() as session:
            incident = incidents.get_by_id(session, incident_id, team_id, lock=True)
            if incident.status == IncidentStatus.RESOLVED:
                raise Conflict(f"{incident.ref} was resolved meanwhile: no silence is needed.")
            _check_not_silenced(session, incident, request, utcnow())
            silences.record_silence(session, incident, actor, request, silence_id)
    except BaseException:
        # Not recorded (resolved meanwhile, a concurrent click won, the database failed): take
        # the silence back so that Alertmanager is as it was.
        try:
            client.expire_silence(silence_id)
        except AlertmanagerError as exc:
            log.error("silence %s of %s made but not recorded, and not expired: %s",
                      silence_id, request.ref, exc.message)
        raise
    return Silenced(request.ref, silence_id, request.ends_at, request.until_resolved)


def expire_resolved(db: Database, client: AlertmanagerClient | None,
                    now: datetime | None = None) -> int:
    """Expire in Alertmanager the silences of resolved incidents; how many were expired. One
    that fails stays for the next call (the scheduler calls this on every tick)."""
    if client is None:
        return 0
    with db.session() as session:
        due = silences.to_expire(session)
    done = 0
    for row_id, silence_id in due:
        try:
            client.expire_silence(silence_id)
        except AlertmanagerError as exc:
            log.warning("silence %s not expired yet: %s", silence_id, exc.message)
            break  # Alertmanager is down or refusing: the rest waits for the next tick
        with db.session() as session:
            silences.mark_expired(session, row_id, EXPIRED_BY, now)
        done += 1
    return done
