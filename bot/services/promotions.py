"""Model promotions: bindings of model names to projects, promotions announced from MLflow, the
generic webhook and the CLI with the gate record of the version.

A promotion is always stored (`P-n`), routed or not; MLflow's redeliveries are recognised by
their delivery id and announce nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import (
    Gate,
    GateStatus,
    ModelBinding,
    Project,
    Promotion,
    PromotionKind,
    utcnow,
)
from bot.render import renderer
from bot.services import access
from bot.services.audit import record_event, snapshot
from bot.services.gate_check import check, counted_gates
from bot.services.gate_state import ACTIVE, signers, waiting_roles
from bot.services.idempotency import first_time
from bot.services.model_versions import MODEL_PATTERN, VERSION_PATTERN, normalize_version
from bot.services.records import lock
from bot.services.refs import next_number
from bot.services.routing import Route, route

STAGE_PATTERN = re.compile(r"^[^\s<>|`*]{1,64}$")
ACTOR_LIMIT = 64
URL_LIMIT = 500
NOTE_LIMIT = 2000
BINDINGS_LIMIT = 100
# MLflow's signed deliveries older (or newer) than this are refused as replays.
SIGNATURE_TOLERANCE_SECONDS = 300
DELIVERY_ID_LIMIT = 64
MLFLOW_FIELDS = {"model": "data.name", "version": "data.version", "to": "data.alias"}
# The version of an alias deletion whose alias Quorum never saw set.
UNKNOWN_VERSION = "unknown"
# Where Quorum itself moved an alias (`promote to`): MLflow's webhook for it adds nothing.
QUORUM = "quorum"
# Actors of promotions that did not come from a person in Slack.
MLFLOW = "mlflow"
WEBHOOK = "webhook"
CLI = "quorum-cli"
# The same model, version and target announced again within this window edits the first
# announcement (QUORUM_PROMOTION_REPEAT_MINUTES).
REPEAT_WINDOW = timedelta(hours=1)


class Status:
    ANNOUNCED = "announced"
    RECORDED = "recorded"  # a new version, in a project that did not ask to hear about them
    UNROUTED = "unrouted"


# ------------------------------------------------------------------------------- bindings

def check_model_name(raw: str | None, field_name: str = "model") -> str:
    model = (raw or "").strip()
    if not model:
        raise InvalidInput("Name the model, as it is registered (e.g. `churn-model`).",
                           field=field_name)
    if not MODEL_PATTERN.match(model):
        raise InvalidInput(f"`{model[:50]}` is not a model name: use letters, digits and "
                           f"`. _ - / :`, at most 100 characters.", field=field_name)
    return model


def binding_for(session: Session, team_id: str, model: str) -> ModelBinding | None:
    return session.scalars(
        select(ModelBinding).where(ModelBinding.team_id == team_id, ModelBinding.model == model)
    ).one_or_none()


def bindings(session: Session, project: Project) -> list[ModelBinding]:
    return list(session.scalars(
        select(ModelBinding).where(ModelBinding.project_id == project.id)
        .order_by(ModelBinding.model).limit(BINDINGS_LIMIT)))


def _binding_snapshot(binding: ModelBinding) -> dict[str, Any]:
    return {"model": binding.model, "channel": binding.project.channel_id}


def bind_model(session: Session, project: Project, actor: str, model: str,
               admins: Collection[str]) -> tuple[ModelBinding, bool]:
    """Bind a registered model name to the project; (binding, False) when it already was."""
    model = check_model_name(model)
    access.admit_configuration(session, project, actor, admins)
    existing = binding_for(session, project.team_id, model)
    if existing is not None:
        if existing.project_id == project.id:
            return existing, False
        raise Conflict(f"`{model}` is already bound to #{existing.project.name}; remove it "
                       f"there first with `/quorum model remove {model}`.")
    binding = ModelBinding(team_id=project.team_id, project=project, model=model,
                           created_by=actor)
    try:
        with session.begin_nested():  # the unique (team, model) decides between two binders
            session.add(binding)
    except IntegrityError:
        raise Conflict(f"`{model}` was bound to a project a moment ago; "
                       f"see `/quorum models`.") from None
    record_event(session, actor=actor, action="project.model_bound", entity=project,
                 project_id=project.id, after=_binding_snapshot(binding))
    return binding, True


def unbind_model(session: Session, project: Project, actor: str, model: str,
                 admins: Collection[str]) -> None:
    model = check_model_name(model)
    access.admit_configuration(session, project, actor, admins)
    binding = binding_for(session, project.team_id, model)
    if binding is None or binding.project_id != project.id:
        raise NotFound(f"`{model}` is not bound to this channel's project; "
                       f"`/quorum models` lists the ones that are.")
    before = _binding_snapshot(binding)
    session.delete(binding)
    session.flush()
    record_event(session, actor=actor, action="project.model_unbound", entity=project,
                 project_id=project.id, before=before)


def set_new_versions(session: Session, project: Project, actor: str, enabled: bool,
                     admins: Collection[str]) -> None:
    """Whether MLflow's new model versions are announced in the project (off by default)."""
    access.admit_configuration(session, project, actor, admins)
    before = {"announce_new_versions": bool(project.announce_new_versions)}
    project.announce_new_versions = enabled
    session.flush()
    if before["announce_new_versions"] != enabled:
        record_event(session, actor=actor, action="project.settings_changed", entity=project,
                     project_id=project.id, before=before,
                     after={"announce_new_versions": enabled})


# ---------------------------------------------------------------------------------- input

def _optional_text(data: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInput(f"`{name}` must be text.", field=name)
    text = str(value).strip()
    if len(text) > limit:
        raise InvalidInput(f"`{name}` is {len(text)} characters long; keep it within {limit}.",
                           field=name)
    return text or None


def _stage(value: str | None, name: str, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(f"`{name}` is required: the alias or stage the version moves "
                               f"to, e.g. `production` or `champion`.", field=name)
        return None
    if not STAGE_PATTERN.match(value):
        raise InvalidInput(f"`{name}` must be one word (an alias or stage such as "
                           f"`production`), at most 64 characters.", field=name)
    return value


@dataclass(frozen=True)
class PromotionDraft:
    """What a promotion says, from any entry point; `validated()` checks it before writing."""

    model: Any
    version: Any
    to: Any = None
    from_: Any = None
    actor: Any = None
    url: Any = None
    note: Any = None
    channel: Any = None
    kind: str = PromotionKind.PROMOTION

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromotionDraft:
        return cls(model=data.get("model"), version=data.get("version"), to=data.get("to"),
                   from_=data.get("from"), actor=data.get("actor"), url=data.get("url"),
                   note=data.get("note"), channel=data.get("channel"))

    def validated(self) -> PromotionDraft:
        values = {"model": self.model, "version": self.version, "to": self.to,
                  "from": self.from_, "actor": self.actor, "url": self.url, "note": self.note,
                  "channel": self.channel}
        if self.model is None or (isinstance(self.model, str) and not self.model.strip()):
            raise InvalidInput("`model` is required: the registered model's name.",
                               field="model")
        if not isinstance(self.model, str):
            raise InvalidInput("`model` must be text.", field="model")
        model = check_model_name(self.model)
        raw_version = _optional_text(values, "version", 65)
        version = normalize_version(raw_version)
        if version is None:
            raise InvalidInput("`version` is required: the model version, e.g. `3`.",
                               field="version")
        if not VERSION_PATTERN.match(version):
            raise InvalidInput(f"`version` `{version[:50]}` is not a version: use a number "
                               f"like `3` or a tag like `1.2.0`.", field="version")
        promotion = self.kind != PromotionKind.NEW_VERSION
        to = _stage(_optional_text(values, "to", 200), "to", required=promotion)
        from_ = _stage(_optional_text(values, "from", 200), "from", required=False)
        url = _optional_text(values, "url", URL_LIMIT)
        if url is not None and (not url.startswith(("https://", "http://"))
                                or any(c in url for c in "<>| \n")):
            raise InvalidInput("`url` must be an http(s) address.", field="url")
        return PromotionDraft(
            model=model, version=version, to=to, from_=from_,
            actor=_optional_text(values, "actor", ACTOR_LIMIT),
            url=url, note=_optional_text(values, "note", NOTE_LIMIT) or "",
            channel=_optional_text(values, "channel", 200), kind=self.kind)


# ------------------------------------------------------------------------------ gate record

@dataclass
class GateRecord:
    """The gate status of one version: passed gates and signers, and the gates still waiting."""

    passed: list[Gate] = field(default_factory=list)
    waiting: list[Gate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.passed)

    def as_record(self, model: str, version: str, check_record: dict[str, Any]) -> dict[str, Any]:
        return {
            **check_record,
            "passed_gates": [
                {"ref": g.ref, "milestone": g.milestone, "project": g.project.name,
                 "channel": g.project.channel_id,
                 "passed_at": g.passed_at.isoformat() if g.passed_at else None,
                 "signers": [{"role": s.role, "user": s.user_id} for s in signers(g)]}
                for g in self.passed],
            "waiting_gates": [
                {"ref": g.ref, "milestone": g.milestone, "status": g.status,
                 "project": g.project.name, "channel": g.project.channel_id,
                 "waiting_roles": waiting_roles(g)}
                for g in self.waiting],
        }


def gate_record(session: Session, team_id: str, model: str, version: str) -> GateRecord:
    """The gates of the version that count (the owning project's only, when the model is
    bound), split into passed and still waiting."""
    gates, _ = counted_gates(session, model, version, team_id=team_id)
    gates = [g for g in gates if g.status in (GateStatus.PASSED, *ACTIVE)]
    return GateRecord(passed=[g for g in gates if g.status == GateStatus.PASSED],
                      waiting=[g for g in gates if g.status in ACTIVE])


# -------------------------------------------------------------------------------- promoting

@dataclass(frozen=True)
class Outcome:
    """What one delivery did: the promotion, and whether it was new, routed and announced."""

    promotion: Promotion | None
    routed: bool
    created: bool = True
    ignored: bool = False
    repeated: bool = False  # announced again within the window: the first one was edited

    def as_json(self) -> dict[str, Any]:
        p = self.promotion
        return {"ok": True, "promotion": p.ref if p else None,
                "status": p.status if p else None, "routed": self.routed,
                "channel": p.project.channel_id if p and p.project else None,
                "created": self.created, "ignored": self.ignored, "repeated": self.repeated}


def card_key(promotion: Promotion) -> str:
    return f"promotion:{promotion.id}:card"


def previous(session: Session, promotion: Promotion) -> Promotion | None:
    """The promotion this one replaces: the last one of the same model to the same place."""
    if promotion.to_stage is None:
        return None
    return session.scalars(
        select(Promotion).where(Promotion.team_id == promotion.team_id,
                                Promotion.model == promotion.model,
                                Promotion.kind == PromotionKind.PROMOTION,
                                Promotion.to_stage == promotion.to_stage,
                                Promotion.id < promotion.id)
        .order_by(Promotion.id.desc()).limit(1)
    ).unique().first()


def render_announcement(promotion: Promotion, record: GateRecord,
                        replaces: Promotion | None) -> dict[str, Any]:
    return renderer.message("promotion/announcement", p=promotion, gates=record,
                            replaces=replaces)


def as_record(promotion: Promotion) -> dict[str, Any]:
    """The promotion as plain values: the shape of exports and audit snapshots."""
    gate = promotion.gate_record or {}
    return {
        "ref": promotion.ref,
        "project": promotion.project.name if promotion.project else None,
        "channel": promotion.project.channel_id if promotion.project else None,
        "status": promotion.status,
        "kind": promotion.kind,
        "model": promotion.model,
        "version": promotion.version,
        "from": promotion.from_stage,
        "to": promotion.to_stage,
        "actor": promotion.actor,
        "url": promotion.url,
        "note": promotion.note,
        "source": promotion.source,
        "gate_passed": bool(gate.get("passed_gates")),
        "gates_passed": [g["ref"] for g in gate.get("passed_gates", [])],
        "gates_waiting": [g["ref"] for g in gate.get("waiting_gates", [])],
        "delivery_id": promotion.delivery_id,
        "repeats": promotion.repeats,
        "repeated_at": promotion.repeated_at.isoformat() if promotion.repeated_at else None,
        "occurred_at": promotion.occurred_at.isoformat(),
        "created_by": promotion.created_by,
        "created_at": promotion.created_at.isoformat(),
    }


def _snapshot(promotion: Promotion) -> dict[str, Any]:
    return snapshot(as_record(promotion))


def _route(session: Session, draft: PromotionDraft, default_channel: str | None) -> Route:
    where = route(session, project=draft.channel, model=draft.model,
                  default_channel=default_channel)
    if draft.channel and where.via != "project":
        raise InvalidInput(f"`channel` {draft.channel}: no project has that channel id or name.",
                           field="channel")
    return where


def _repeat_of(session: Session, team_id: str, project: Project | None, draft: PromotionDraft,
               since: datetime) -> Promotion | None:
    """The promotion of the same model, version and target to the same place since `since`,
    when it is still the target's latest move: `3 → 4 → 3` is a rollback, not a repeat, and so
    is setting an alias again after it was deleted."""
    if draft.kind != PromotionKind.PROMOTION:
        return None
    latest = session.scalars(
        select(Promotion).where(
            Promotion.team_id == team_id,
            Promotion.kind.in_((PromotionKind.PROMOTION, PromotionKind.ALIAS_DELETED)),
            Promotion.model == draft.model, Promotion.to_stage == draft.to,
            Promotion.project_id == project.id if project is not None
            else Promotion.project_id.is_(None),
            Promotion.created_at >= since)
        .order_by(Promotion.id.desc()).limit(1)).unique().first()
    if latest is None or latest.kind != PromotionKind.PROMOTION \
            or latest.version != draft.version:
        return None
    return lock(session, latest)


def _announce_again(session: Session, promotion: Promotion, draft: PromotionDraft, source: str,
                    created_by: str, now: datetime) -> Outcome:
    """A repeat: count it, edit the first card (with the gate record as it is now) and say so in
    its thread, rather than post a second announcement."""
    before = _snapshot(promotion)
    record = gate_record(session, promotion.team_id, promotion.model, promotion.version)
    promotion.gate_record = record.as_record(
        promotion.model, promotion.version,
        check(session, promotion.model, promotion.version).as_record())
    promotion.repeats += 1
    promotion.repeated_at = now
    session.flush()
    record_event(session, actor=created_by, action="promotion.repeated", entity=promotion,
                 project_id=promotion.project_id, before=before,
                 after={**_snapshot(promotion), "repeat_source": source,
                        "repeat_actor": draft.actor})
    if promotion.status == Status.ANNOUNCED and promotion.project is not None:
        outbox.update_message(session, promotion.team_id, card_key(promotion),
                              render_announcement(promotion, record,
                                                  previous(session, promotion)))
        outbox.post_message(session, promotion.team_id, promotion.project.channel_id,
                            renderer.message("promotion/repeated", p=promotion, source=source,
                                             actor=draft.actor, at=now),
                            thread_key=card_key(promotion))
    return Outcome(promotion, routed=promotion.project_id is not None, created=False,
                   repeated=True)


def record_promotion(session: Session, draft: PromotionDraft, *, source: str,
                     created_by: str, default_channel: str | None = None,
                     delivery_id: str | None = None, occurred_at: datetime | None = None,
                     repeat_window: timedelta = REPEAT_WINDOW,
                     now: datetime | None = None) -> Outcome:
    """Store a promotion (or a new version), audit it, and announce it with the gate record in
    the model's project channel when it has one. The same model, version and target announced
    again within `repeat_window` (a retried CI job, MLflow setting the alias again) edits the
    first announcement instead."""
    draft = draft.validated()
    now = now or utcnow()
    where = _route(session, draft, default_channel)
    project = where.project
    holder = last_holder(session, where.team_id, draft.model, draft.to) \
        if draft.kind != PromotionKind.NEW_VERSION else None
    if draft.kind == PromotionKind.ALIAS_DELETED:
        draft = replace(draft, version=holder.version if holder else UNKNOWN_VERSION)
    if repeat_window > timedelta(0):
        earlier = _repeat_of(session, where.team_id, project, draft, now - repeat_window)
        if earlier is not None:
            return _announce_again(session, earlier, draft, source, created_by, now)
    record = gate_record(session, where.team_id, draft.model, draft.version)
    checked = check(session, draft.model, draft.version, team_id=where.team_id).as_record()
    rollback = None
    if holder is not None and (draft.kind == PromotionKind.ALIAS_DELETED
                               or is_older(draft.version, holder.version)):
        old = gate_record(session, where.team_id, draft.model, holder.version)
        rollback = {"from_version": holder.version, "from_promotion": holder.ref,
                    **old.as_record(draft.model, holder.version, {})}
    if project is None:
        status = Status.UNROUTED
    elif draft.kind == PromotionKind.NEW_VERSION and not project.announce_new_versions:
        status = Status.RECORDED
    else:
        status = Status.ANNOUNCED
    promotion = Promotion(
        team_id=where.team_id, number=next_number(session, where.team_id, Promotion.ref_prefix),
        project=project, kind=draft.kind, model=draft.model, version=draft.version,
        to_stage=draft.to, from_stage=draft.from_, actor=draft.actor, url=draft.url,
        note=draft.note or "", source=source, status=status, delivery_id=delivery_id,
        gate_record={**record.as_record(draft.model, draft.version, checked),
                     "rollback": rollback},
        occurred_at=min(occurred_at or now, now), created_by=created_by, created_at=now,
    )
    session.add(promotion)
    session.flush()
    action = {PromotionKind.PROMOTION: "promotion.rolled_back" if rollback
              else "promotion.recorded", PromotionKind.NEW_VERSION:
              "promotion.version_registered", PromotionKind.ALIAS_DELETED:
              "promotion.alias_deleted"}[PromotionKind(draft.kind)]
    record_event(session, actor=created_by, action=action, entity=promotion,
                 project_id=project.id if project else None, after=_snapshot(promotion))
    if status == Status.ANNOUNCED and project is not None:
        outbox.post_message(session, promotion.team_id, project.channel_id,
                            render_announcement(promotion, record, previous(session, promotion)),
                            key=card_key(promotion))
    return Outcome(promotion, routed=project is not None)


def last_holder(session: Session, team_id: str, model: str, alias: str | None
                ) -> Promotion | None:
    """The last promotion of `model` to `alias`: the version that held it until now."""
    if not alias:
        return None
    return session.scalars(
        select(Promotion).where(Promotion.team_id == team_id, Promotion.model == model,
                                Promotion.kind == PromotionKind.PROMOTION,
                                Promotion.to_stage == alias)
        .order_by(Promotion.id.desc()).limit(1)
    ).unique().first()


def is_older(version: str, than: str) -> bool:
    """`2` is older than `3`; tags that are not numbers are never compared."""
    return version.isdigit() and than.isdigit() and int(version) < int(than)


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


# ------------------------------------------------------------------------------------ MLflow

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
        try:
            return draft.validated()
        except InvalidInput as exc:
            wrong = MLFLOW_FIELDS.get(exc.field or "", "data")
            raise InvalidInput(exc.message.replace(f"`{exc.field}`", f"`{wrong}`"),
                               field=wrong) from None
    name, version = _data_field(data, "name"), _data_field(data, "version")
    promoted = event == "model_version_alias.created"
    alias = _data_field(data, "alias") if promoted else None
    draft = PromotionDraft(model=name, version=version, to=alias,
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


# ---------------------------------------------------------------------- digests and export

def promotions_between(session: Session, project: Project, start: datetime,
                       end: datetime) -> list[Promotion]:
    """The project's promotions in a period (for the retrospective digest)."""
    return list(session.scalars(
        select(Promotion).where(Promotion.project_id == project.id,
                                Promotion.kind == PromotionKind.PROMOTION,
                                Promotion.created_at >= start, Promotion.created_at < end)
        .order_by(Promotion.created_at, Promotion.id)
    ).unique())
