"""MLflow's model registry webhook: the signature of a delivery, the promotion (or new version, or
deleted alias) its payload describes, and the delivery applied once.

A redelivery (the same delivery id) changes and announces nothing; MLflow's webhook for an alias
Quorum moved itself (`promote to`) is matched to Quorum's own record of the move.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.errors import InvalidInput
from bot.models import Gate, Promotion, PromotionKind
from bot.services.idempotency import first_time
from bot.services.promotions import (
    QUORUM,
    REPEAT_WINDOW,
    UNKNOWN_VERSION,
    Outcome,
    PromotionDraft,
    record_promotion,
)

# MLflow's signed deliveries older (or newer) than this are refused as replays.
SIGNATURE_TOLERANCE_SECONDS = 300
DELIVERY_ID_LIMIT = 64
MLFLOW_FIELDS = {"model": "data.name", "version": "data.version", "to": "data.alias"}
# The actor and source of the promotions MLflow's webhook announces.
MLFLOW = "mlflow"


def quorum_move(session: Session, draft: PromotionDraft) -> Promotion | None:
    """Quorum's own record of an alias it moved (`promote to`), not yet matched to MLflow's
    webhook for it."""
    return session.scalars(
        select(Promotion).where(Promotion.source == QUORUM, Promotion.delivery_id.is_(None),
                                Promotion.model == draft.model,
                                Promotion.version == draft.version,
                                Promotion.to_stage == draft.to,
                                Promotion.kind == PromotionKind.PROMOTION)
        .order_by(Promotion.id.desc()).limit(1).with_for_update(of=Promotion)
    ).unique().first()


def seen_delivery(session: Session, delivery_id: str) -> Promotion | None:
    return session.scalars(
        select(Promotion).where(Promotion.delivery_id == delivery_id)
    ).unique().one_or_none()


def verify_mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes,
                            signature: str, now: float) -> str | None:
    """Why MLflow's signed delivery is refused, or None when it is genuine and fresh.

    The signature is `v1,` + base64 of HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")
    over the raw bytes received, compared in constant time.
    """
    if not delivery_id or not timestamp or not signature:
        missing = [name for name, value in (("X-MLflow-Delivery-Id", delivery_id),
                                            ("X-MLflow-Timestamp", timestamp),
                                            ("X-MLflow-Signature", signature)) if not value]
        return f"Missing {', '.join(missing)}: MLflow signs every delivery of a webhook " \
               f"that has a secret."
    try:
        sent = int(timestamp)
    except ValueError:
        return "X-MLflow-Timestamp is not a Unix time in seconds."
    if abs(now - sent) > SIGNATURE_TOLERANCE_SECONDS:
        return "X-MLflow-Timestamp is more than 5 minutes away from now: refused as a replay."
    version, _, encoded = signature.partition(",")
    if version != "v1" or not encoded:
        return "X-MLflow-Signature must be `v1,<base64 HMAC-SHA256>`."
    message = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, encoded.strip().encode()):
        return "Wrong X-MLflow-Signature: check MLFLOW_WEBHOOK_SECRET against the webhook's " \
               "secret."
    return None


def _data_field(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(f"`data.{name}` is required.", field=f"data.{name}")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput(f"`data.{name}` must be text.", field=f"data.{name}")
    return str(value)


def _mlflow_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mlflow_draft(payload: Mapping[str, Any]) -> PromotionDraft | None:
    """The promotion or new version an MLflow webhook payload describes; None for events
    Quorum accepts and ignores. Raises InvalidInput naming the field that is wrong."""
    for name in ("entity", "action"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            raise InvalidInput(f"`{name}` is required.", field=name)
    data = payload.get("data")
    event = f"{payload['entity']}.{payload['action']}"
    if event not in ("model_version_alias.created", "model_version.created",
                     "model_version_alias.deleted"):
        return None
    if not isinstance(data, dict):
        raise InvalidInput("`data` must be an object.", field="data")
    if event == "model_version_alias.deleted":
        # MLflow sends only {name, alias}: the version is the one the alias last pointed at.
        draft = PromotionDraft(model=_data_field(data, "name"), version=UNKNOWN_VERSION,
                               to=_data_field(data, "alias"), kind=PromotionKind.ALIAS_DELETED)
    else:
        promoted = event == "model_version_alias.created"
        draft = PromotionDraft(
            model=_data_field(data, "name"), version=_data_field(data, "version"),
            to=_data_field(data, "alias") if promoted else None,
            kind=PromotionKind.PROMOTION if promoted else PromotionKind.NEW_VERSION)
    try:
        return draft.validated()
    except InvalidInput as exc:
        # Name MLflow's field, not ours.
        wrong = MLFLOW_FIELDS.get(exc.field or "", "data")
        raise InvalidInput(exc.message.replace(f"`{exc.field}`", f"`{wrong}`"),
                           field=wrong) from None


def receive_mlflow(session: Session, payload: Mapping[str, Any], delivery_id: str, *,
                   default_channel: str | None = None, repeat_window: timedelta = REPEAT_WINDOW,
                   now: datetime | None = None) -> Outcome:
    """Apply one MLflow registry webhook delivery; a redelivery changes and announces nothing."""
    draft = mlflow_draft(payload)
    earlier = seen_delivery(session, delivery_id)
    if earlier is not None:
        return Outcome(earlier, routed=earlier.project_id is not None, created=False)
    if draft is None:
        return Outcome(None, routed=False, created=False, ignored=True)
    if draft.kind == PromotionKind.PROMOTION:
        # MLflow calls back while the sweep that moved the alias may still be committing: wait
        # for that gate's row lock, so Quorum's own record of the move is seen and not doubled.
        session.scalars(
            select(Gate.id).where(Gate.model == draft.model, Gate.version == draft.version,
                                  Gate.promote_alias == draft.to,
                                  Gate.promotion_state.is_not(None))
            .with_for_update()).all()
        ours = quorum_move(session, draft)
        if ours is not None:  # Quorum set this alias itself and announced it already
            ours.delivery_id = delivery_id
            session.flush()
            return Outcome(ours, routed=ours.project_id is not None, created=False)
    try:
        with session.begin_nested():  # a concurrent redelivery may store it first
            outcome = record_promotion(session, draft, source=MLFLOW, created_by=MLFLOW,
                                       default_channel=default_channel, delivery_id=delivery_id,
                                       occurred_at=_mlflow_time(payload.get("timestamp")),
                                       repeat_window=repeat_window, now=now)
            if outcome.repeated and outcome.promotion is not None and (
                    outcome.promotion.delivery_id == delivery_id or not first_time(
                        session, outcome.promotion.team_id, f"mlflow-delivery:{delivery_id}")):
                # This very delivery, stored by a copy that committed meanwhile, or MLflow's
                # retry of a repeat that was already counted: undo this count.
                raise _AlreadyCounted(outcome)
            return outcome
    except _AlreadyCounted as counted:
        promotion = counted.outcome.promotion
        session.refresh(promotion)  # type: ignore[arg-type]
        return Outcome(promotion, routed=counted.outcome.routed, created=False, repeated=True)
    except IntegrityError:
        earlier = seen_delivery(session, delivery_id)
        if earlier is None:
            raise
        return Outcome(earlier, routed=earlier.project_id is not None, created=False)


class _AlreadyCounted(Exception):
    """Rolls back the savepoint of a redelivered repeat (see `receive_mlflow`)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("already counted")
        self.outcome = outcome
