"""`promote to <alias>`: when a gate passes, Quorum moves that MLflow alias to the gate's version.

The move is tried by a sweep, outbox-style: the gate stays passed whatever MLflow says; a refusal
or an outage is retried with backoff (the card says "promotion pending — retrying"), and after a
few failures the channel hears it loudly once. The gate's row is locked while it is tried and
`moved` is final, so an alias is never moved twice. Quorum records the promotion it made (`P-n`)
and announces it; MLflow's webhook for that same alias then adds nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import Settings
from bot.mlflow_registry import Registry, RegistryError
from bot.models import Gate, GateStatus, PromotionState
from bot.render import renderer
from bot.scheduler import sweep
from bot.services import gates as gate_service
from bot.services import promotions
from bot.services.audit import record_event

FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 30 * 60
# After this many failed attempts the channel is told (once); retries go on.
LOUD_AFTER = 3
BATCH = 20
QUORUM = "quorum"


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … at most 30 min between attempts."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0),
                                 MAX_RETRY_SECONDS))


@sweep("gate_promotions", with_settings=True)
def move_aliases_of_passed_gates(session: Session, now: datetime, settings: Settings) -> bool:
    """Move the aliases of passed gates whose next attempt is due; True when more are due."""
    if not settings.mlflow_tracking_uri:
        return False
    registry = Registry(settings.mlflow_tracking_uri, settings.mlflow_tracking_token)
    due = session.scalars(
        select(Gate).where(Gate.promotion_state == PromotionState.PENDING,
                           Gate.promotion_next_at <= now)
        .order_by(Gate.promotion_next_at, Gate.id).limit(BATCH + 1)
        .with_for_update(skip_locked=True, of=Gate)
    ).unique().all()
    for gate in due[:BATCH]:
        attempt(session, gate, registry, now)
    return len(due) > BATCH


def attempt(session: Session, gate: Gate, registry: Registry, now: datetime) -> None:
    """One try at moving the gate's alias (the caller holds the gate's row lock)."""
    if gate.status != GateStatus.PASSED or gate.promotion_state != PromotionState.PENDING:
        return
    assert gate.model and gate.version and gate.promote_alias
    before = gate_service.gate_snapshot(gate)
    try:
        registry.set_alias(gate.model, gate.promote_alias, gate.version)
    except RegistryError as exc:
        gate.promotion_attempts += 1
        gate.promotion_error = exc.message
        gate.promotion_next_at = now + backoff(gate.promotion_attempts)
        session.flush()
        record_event(session, actor=QUORUM, action="gate.promotion_failed", entity=gate,
                     project_id=gate.project_id, before=before,
                     after=gate_service.gate_snapshot(gate))
        gate_service.refresh_card(session, gate)
        if gate.promotion_attempts == LOUD_AFTER:
            outbox.post_message(session, gate.team_id, gate.project.channel_id,
                                renderer.message("gate/promotion_failing", g=gate,
                                                 retry=backoff(gate.promotion_attempts)))
        return
    gate.promotion_state = PromotionState.MOVED
    gate.promoted_at = now
    gate.promotion_next_at = None
    gate.promotion_error = None
    session.flush()
    record_event(session, actor=QUORUM, action="gate.promoted", entity=gate,
                 project_id=gate.project_id, before=before, after=gate_service.gate_snapshot(gate))
    gate_service.refresh_card(session, gate)
    gate_service.post_in_thread(session, gate, "gate/promoted")
    draft = promotions.PromotionDraft(
        model=gate.model, version=gate.version, to=gate.promote_alias,
        note=f"Quorum moved the MLflow alias when {gate.ref} passed.",
        channel=gate.project.channel_id)
    promotions.record_promotion(session, draft, source=promotions.QUORUM,
                                created_by=promotions.QUORUM, now=now)
