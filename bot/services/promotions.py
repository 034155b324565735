"""Model promotions: bindings of model names to projects, promotions announced from MLflow, the
generic webhook and the CLI with the gate record of the version, and `/quorum trace`.

A promotion is always stored (`P-n`), routed or not; MLflow's redeliveries are recognised by
their delivery id and announce nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import (
    Decision,
    Gate,
    GateStatus,
    Incident,
    ModelBinding,
    Project,
    Promotion,
    PromotionKind,
    utcnow,
)
from bot.render import renderer
from bot.services import access
from bot.services.audit import record_event, snapshot
from bot.services.decisions import SEARCHED_TEXT
from bot.services.gates import (
    ACTIVE,
    MODEL_PATTERN,
    VERSION_PATTERN,
    check,
    normalize_version,
    role_states,
    signers,
)
from bot.services.refs import next_number
from bot.services.routing import Route, route

STAGE_PATTERN = re.compile(r"^[^\s<>|`*]{1,64}$")
ACTOR_LIMIT = 64
URL_LIMIT = 500
NOTE_LIMIT = 2000
BINDINGS_LIMIT = 100
TRACE_LIMIT = 10
# MLflow's signed deliveries older (or newer) than this are refused as replays.
SIGNATURE_TOLERANCE_SECONDS = 300
DELIVERY_ID_LIMIT = 64
MLFLOW_FIELDS = {"model": "data.name", "version": "data.version", "to": "data.alias"}
# Actors of promotions that did not come from a person in Slack.
MLFLOW = "mlflow"
WEBHOOK = "webhook"
CLI = "quorum-cli"


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
        promotion = self.kind == PromotionKind.PROMOTION
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
                {"ref": g.ref, "milestone": g.milestone,
                 "passed_at": g.passed_at.isoformat() if g.passed_at else None,
                 "signers": [{"role": s.role, "user": s.user_id} for s in signers(g)]}
                for g in self.passed],
            "waiting_gates": [
                {"ref": g.ref, "milestone": g.milestone, "status": g.status,
                 "waiting_roles": [s.role for s in role_states(g) if s.state == "waiting"]}
                for g in self.waiting],
        }


def gate_record(session: Session, team_id: str, model: str, version: str) -> GateRecord:
    """Every gate of the version in the workspace, split into passed and still waiting."""
    gates = session.scalars(
        select(Gate).where(Gate.team_id == team_id, Gate.model == model,
                           Gate.version == version,
                           Gate.status.in_((GateStatus.PASSED, *ACTIVE)))
        .order_by(Gate.number)
    ).all()
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

    def as_json(self) -> dict[str, Any]:
        p = self.promotion
        return {"ok": True, "promotion": p.ref if p else None,
                "status": p.status if p else None, "routed": self.routed,
                "channel": p.project.channel_id if p and p.project else None,
                "created": self.created, "ignored": self.ignored}


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


def record_promotion(session: Session, draft: PromotionDraft, *, source: str,
                     created_by: str, default_channel: str | None = None,
                     delivery_id: str | None = None, occurred_at: datetime | None = None,
                     now: datetime | None = None) -> Outcome:
    """Store a promotion (or a new version), audit it, and announce it with the gate record in
    the model's project channel when it has one."""
    draft = draft.validated()
    now = now or utcnow()
    where = _route(session, draft, default_channel)
    project = where.project
    record = gate_record(session, where.team_id, draft.model, draft.version)
    checked = check(session, draft.model, draft.version).as_record()
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
        gate_record=record.as_record(draft.model, draft.version, checked),
        occurred_at=min(occurred_at or now, now), created_by=created_by, created_at=now,
    )
    session.add(promotion)
    session.flush()
    action = "promotion.recorded" if draft.kind == PromotionKind.PROMOTION \
        else "promotion.version_registered"
    record_event(session, actor=created_by, action=action, entity=promotion,
                 project_id=project.id if project else None, after=_snapshot(promotion))
    if status == Status.ANNOUNCED and project is not None:
        outbox.post_message(session, promotion.team_id, project.channel_id,
                            render_announcement(promotion, record, previous(session, promotion)),
                            key=card_key(promotion))
    return Outcome(promotion, routed=project is not None)


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
    if event not in ("model_version_alias.created", "model_version.created"):
        return None
    if not isinstance(data, dict):
        raise InvalidInput("`data` must be an object.", field="data")
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
                   default_channel: str | None = None,
                   now: datetime | None = None) -> Outcome:
    """Apply one MLflow registry webhook delivery; a redelivery changes and announces nothing."""
    draft = mlflow_draft(payload)
    earlier = seen_delivery(session, delivery_id)
    if earlier is not None:
        return Outcome(earlier, routed=earlier.project_id is not None, created=False)
    if draft is None:
        return Outcome(None, routed=False, created=False, ignored=True)
    try:
        with session.begin_nested():  # a concurrent redelivery may store it first
            return record_promotion(session, draft, source=MLFLOW, created_by=MLFLOW,
                                    default_channel=default_channel, delivery_id=delivery_id,
                                    occurred_at=_mlflow_time(payload.get("timestamp")),
                                    now=now)
    except IntegrityError:
        earlier = seen_delivery(session, delivery_id)
        if earlier is None:
            raise
        return Outcome(earlier, routed=earlier.project_id is not None, created=False)


# ------------------------------------------------------------------------------------- trace

@dataclass
class Trace:
    """Everything Quorum knows about one model version, for `/quorum trace`."""

    model: str
    version: str
    decisions: list[Decision]
    gates: list[Gate]
    promotions: list[Promotion]
    incidents: list[Incident]

    @property
    def hypotheses(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for decision in self.decisions:
            for hypothesis in decision.hypotheses:
                seen.setdefault(hypothesis.id, hypothesis)
        return sorted(seen.values(), key=lambda h: h.number)


def trace(session: Session, team_id: str, model: str, version: str,
          within: Collection[int] | None = None) -> Trace:
    """What Quorum knows about one model version. `within`: look for the decisions that name
    the model only in these projects (the portal's version page, which must not read a
    million-decision workspace); None looks through the whole workspace."""
    model = check_model_name(model)
    normalized = normalize_version(version)
    if normalized is None or not VERSION_PATTERN.match(normalized):
        raise InvalidInput(f"`{(version or '')[:50]}` is not a version: e.g. `v3`.",
                           field="version")
    # A decision is about the model when its text names it: the very expression decision
    # search reads, so that PostgreSQL answers from its trigram index (migration 0012) instead
    # of reading every decision's row.
    naming = (select(Decision).options(selectinload(Decision.hypotheses))
              .where(Decision.team_id == team_id,
                     literal_column(SEARCHED_TEXT, String).contains(model.lower(),
                                                                    autoescape=True)))
    if within is not None:
        # One query per project, newest first along its (project_id, created_at, id) index:
        # with `project_id IN (…)` SQLite would read the whole workspace by (team_id, number).
        found = [decision for project_id in sorted(within) for decision in session.scalars(
            naming.where(Decision.project_id == project_id)
            .order_by(Decision.created_at.desc(), Decision.id.desc()).limit(TRACE_LIMIT))
            .unique()]
        decisions = sorted(found, key=lambda d: (d.created_at, d.id), reverse=True)[:TRACE_LIMIT]
    else:
        decisions = session.scalars(
            naming.order_by(Decision.number.desc()).limit(TRACE_LIMIT)).unique().all()
    gates = session.scalars(
        select(Gate).where(Gate.team_id == team_id, Gate.model == model,
                           Gate.version == normalized)
        .order_by(Gate.number).limit(TRACE_LIMIT)
    ).all()
    promotions = session.scalars(
        select(Promotion).where(Promotion.team_id == team_id, Promotion.model == model,
                                Promotion.version == normalized)
        .order_by(Promotion.number).limit(TRACE_LIMIT)
    ).unique().all()
    incidents = session.scalars(
        select(Incident).where(Incident.team_id == team_id, Incident.model == model,
                               Incident.model_version.in_((normalized, f"v{normalized}")))
        .order_by(Incident.number).limit(TRACE_LIMIT)
    ).unique().all()
    return Trace(model, normalized, list(reversed(decisions)), list(gates), list(promotions),
                 list(incidents))


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
