"""Model promotions: what a promotion says (`PromotionDraft`, from the generic webhook, the CLI,
MLflow or Quorum's own `promote to`), stored (`P-n`, routed or not) and announced in the model's
project channel with the gate record of the version. The same move announced again within the
repeat window edits the first announcement; a move back to an older version, or an alias deleted,
is announced as a rollback.

Model bindings are `model_bindings`; MLflow's webhook (signatures, payloads, redeliveries) is
`mlflow_webhook`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import InvalidInput
from bot.models import (
    Gate,
    GateStatus,
    Project,
    Promotion,
    PromotionKind,
    utcnow,
)
from bot.render import renderer
from bot.services.audit import record_event, snapshot
from bot.services.gate_check import check, counted_gates
from bot.services.gate_state import ACTIVE, signers, waiting_roles
from bot.services.model_bindings import check_model_name
from bot.services.model_versions import VERSION_PATTERN, normalize_version
from bot.services.records import lock
from bot.services.refs import next_number
from bot.services.routing import Route, route

STAGE_PATTERN = re.compile(r"^[^\s<>|`*]{1,64}$")
ACTOR_LIMIT = 64
URL_LIMIT = 500
NOTE_LIMIT = 2000
# The version of an alias deletion whose alias Quorum never saw set.
UNKNOWN_VERSION = "unknown"
# Where Quorum itself moved an alias (`promote to`): MLflow's webhook for it adds nothing.
QUORUM = "quorum"
# Actors of promotions that did not come from a person in Slack (MLflow's: `mlflow_webhook`).
WEBHOOK = "webhook"
CLI = "quorum-cli"
# The same model, version and target announced again within this window edits the first
# announcement (QUORUM_PROMOTION_REPEAT_MINUTES).
REPEAT_WINDOW = timedelta(hours=1)


class Status:
    ANNOUNCED = "announced"
    RECORDED = "recorded"  # a new version, in a project that did not ask to hear about them
    UNROUTED = "unrouted"


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
