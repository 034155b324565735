"""GitHub deployment protection rules: a deployment waits for its project's gates.

`/quorum github map <owner/repo> <environment> [model <name>]` says which project's gates hold a
repository's deployments to an environment. When GitHub asks (`deployment_protection_rule`),
Quorum links the gates that decide (with a model: every gate of the deployed version in that
project; without: the open gate of the milestone `deploy to <environment>`), opens one when there
is none, and answers GitHub once they decide: approved when every linked gate passed, rejected
as soon as one gets changes requested, expires or is withdrawn. The answer itself goes out from a
sweep (`github_reviews`), retried with backoff while GitHub is unreachable, and only once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import Settings
from bot.errors import Conflict, Forbidden, InvalidInput, NotFound
from bot.models import (
    DeploymentState,
    Gate,
    GateStatus,
    GithubDeployment,
    GithubMapping,
    Project,
    utcnow,
)
from bot.render import renderer
from bot.scheduler import sweep
from bot.services import access
from bot.services import gates as gate_service
from bot.services.audit import record_event
from bot.services.gate_check import counted_gates
from bot.services.gate_drafts import GateDraft
from bot.services.gate_state import signers
from bot.services.model_bindings import check_model_name
from bot.services.model_versions import VERSION_PATTERN, normalize_version

log = logging.getLogger("quorum.github")

REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,39}/[A-Za-z0-9_.-]{1,100}$")
ENVIRONMENT_PATTERN = re.compile(r"^[^\s<>|`*][^<>|`*\n]{0,254}$")
CALLBACK_LIMIT = 500
DELIVERY_ID_LIMIT = 64
COMMENT_LIMIT = 1000
MAPPINGS_LIMIT = 100
BATCH = 20
GITHUB = "github"
FAILED = ("changes_requested", "expired", "withdrawn")
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 30 * 60
MAX_ATTEMPTS = 20


# ---------------------------------------------------------------------------- mappings

def normalize_repo(raw: str | None) -> str:
    repo = (raw or "").strip().removeprefix("https://github.com/").strip("/").lower()
    if not REPO_PATTERN.match(repo):
        raise InvalidInput(f"`{(raw or '')[:60]}` is not a repository: write it as "
                           f"`owner/name`.", field="repo")
    return repo


def check_environment(raw: str | None) -> str:
    environment = (raw or "").strip()
    if not ENVIRONMENT_PATTERN.match(environment):
        raise InvalidInput("Name the GitHub environment as GitHub does, e.g. `production` "
                           "(at most 255 characters).", field="environment")
    return environment


def map_environment(session: Session, project: Project, actor: str, repo: str, environment: str,
                    model: str | None, admins: Collection[str]) -> tuple[GithubMapping, bool]:
    """Hold `repo`'s deployments to `environment` for this project's gates (a project admin's
    act); (mapping, False) when it already was mapped here, now with `model`."""
    repo, environment = normalize_repo(repo), check_environment(environment)
    model = check_model_name(model) if model else None
    access.admit_configuration(session, project, actor, admins,
                               "map GitHub environments to this project")
    existing = session.scalars(select(GithubMapping).where(
        GithubMapping.repo == repo, GithubMapping.environment == environment)).unique().first()
    if existing is not None:
        if existing.project_id != project.id:
            raise Conflict(f"{repo} `{environment}` already waits for the gates of "
                           f"<#{existing.project.channel_id}>; unmap it there first.",
                           mentions=[existing.project.channel_id])
        before = {"repo": repo, "environment": environment, "model": existing.model}
        existing.model = model
        session.flush()
        if before["model"] != model:
            record_event(session, actor=actor, action="project.github_mapped", entity=project,
                         project_id=project.id, before=before, after={**before, "model": model})
        return existing, False
    mapping = GithubMapping(team_id=project.team_id, project=project, repo=repo,
                            environment=environment, model=model, created_by=actor)
    try:
        with session.begin_nested():
            session.add(mapping)
    except IntegrityError:
        raise Conflict(f"{repo} `{environment}` was mapped a moment ago; try again.") from None
    record_event(session, actor=actor, action="project.github_mapped", entity=project,
                 project_id=project.id,
                 after={"repo": repo, "environment": environment, "model": model})
    return mapping, True


def mappings(session: Session, project: Project) -> list[GithubMapping]:
    return list(session.scalars(select(GithubMapping).where(
        GithubMapping.project_id == project.id)
        .order_by(GithubMapping.repo, GithubMapping.environment).limit(MAPPINGS_LIMIT)).unique())


# ---------------------------------------------------------------------------- the webhook

@dataclass(frozen=True)
class ProtectionRuleEvent:
    """The parts of a `deployment_protection_rule` webhook Quorum acts on."""

    repo: str
    environment: str
    callback_url: str
    installation_id: int
    sha: str | None
    ref: str | None
    payload_version: str | None


def _text(data: Mapping[str, Any], name: str, path: str, limit: int,
          required: bool = True) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"`{path}` is required.", field=path)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"`{path}` must be text.", field=path)
    if len(value) > limit:
        raise InvalidInput(f"`{path}` is longer than {limit} characters.", field=path)
    return value.strip()


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise InvalidInput(f"`{name}` must be an object.", field=name)
    return value


def _payload_version(deployment: Mapping[str, Any]) -> str | None:
    """`deployment.payload.version` (or `model_version`); GitHub may send the payload as a
    JSON string."""
    payload = deployment.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload.strip() else {}
        except ValueError:
            payload = {}
    if not isinstance(payload, dict):
        return None
    for key in ("version", "model_version"):
        value = payload.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:64]
    return None


def parse_event(payload: Mapping[str, Any]) -> ProtectionRuleEvent:
    """Validate a `deployment_protection_rule` body; InvalidInput names the wrong field."""
    environment = check_environment(_text(payload, "environment", "environment", 255))
    callback = _text(payload, "deployment_callback_url", "deployment_callback_url",
                     CALLBACK_LIMIT)
    assert callback is not None
    if not callback.startswith(("https://", "http://")) or any(c in callback for c in " <>|\n"):
        raise InvalidInput("`deployment_callback_url` must be an http(s) URL.",
                           field="deployment_callback_url")
    repository = _object(payload, "repository")
    try:
        repo = normalize_repo(_text(repository, "full_name", "repository.full_name", 140))
    except InvalidInput:
        raise InvalidInput("`repository.full_name` must be `owner/name`.",
                           field="repository.full_name") from None
    installation = _object(payload, "installation")
    installation_id = installation.get("id")
    if not isinstance(installation_id, int) or isinstance(installation_id, bool) \
            or not 0 < installation_id < 2 ** 62:
        raise InvalidInput("`installation.id` must be the installation's number.",
                           field="installation.id")
    deployment = payload.get("deployment")
    if deployment is not None and not isinstance(deployment, dict):
        raise InvalidInput("`deployment` must be an object.", field="deployment")
    deployment = deployment or {}
    return ProtectionRuleEvent(
        repo=repo, environment=environment, callback_url=callback,
        installation_id=installation_id,
        sha=_text(deployment, "sha", "deployment.sha", 64, required=False),
        ref=_text(deployment, "ref", "deployment.ref", 255, required=False),
        payload_version=_payload_version(deployment))


def version_of(event: ProtectionRuleEvent) -> str | None:
    """The deployed model version: the deployment's payload says it, or a ref like `v3`."""
    if event.payload_version:
        return normalize_version(event.payload_version)
    if event.ref:
        tail = event.ref.rsplit("/", 1)[-1]
        version = normalize_version(tail)
        if version and version[0].isdigit() and VERSION_PATTERN.match(version):
            return version
    return None


@dataclass(frozen=True)
class Received:
    """What one delivery did."""

    deployment: GithubDeployment | None
    mapped: bool
    created: bool = True
    gates: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        d = self.deployment
        return {"ok": True, "mapped": self.mapped, "created": self.created,
                "state": d.state if d else None, "gates": list(self.gates),
                "channel": d.project.channel_id if d else None}


def _refs(session: Session, deployment: GithubDeployment) -> tuple[str, ...]:
    return tuple(g.ref for g in session.scalars(
        select(Gate).where(Gate.id.in_(deployment.gate_ids or [])).order_by(Gate.number)))


def receive(session: Session, event: ProtectionRuleEvent, delivery_id: str,
            now: datetime | None = None) -> Received:
    """Hold one deployment for its gates; a redelivery (same GUID) changes nothing."""
    now = now or utcnow()
    earlier = _seen(session, delivery_id)
    if earlier is not None:
        return Received(earlier, mapped=True, created=False, gates=_refs(session, earlier))
    mapping = session.scalars(select(GithubMapping).where(
        GithubMapping.repo == event.repo, GithubMapping.environment == event.environment)
    ).unique().first()
    if mapping is None:
        return Received(None, mapped=False, created=False)
    project = mapping.project
    deployment = GithubDeployment(
        delivery_id=delivery_id, team_id=project.team_id, project=project, repo=event.repo,
        environment=event.environment, installation_id=event.installation_id,
        callback_url=event.callback_url, sha=event.sha, ref=event.ref, model=mapping.model,
        version=version_of(event) if mapping.model else None, gate_ids=[],
        state=DeploymentState.WAITING, attempts=0, created_at=now)
    try:
        with session.begin_nested():  # a simultaneous redelivery may store it first
            session.add(deployment)
    except IntegrityError:
        earlier = _seen(session, delivery_id)
        if earlier is None:
            raise
        return Received(earlier, mapped=True, created=False, gates=_refs(session, earlier))
    if mapping.model and deployment.version is None:
        _decide(session, deployment, DeploymentState.REJECT,
                f"Quorum could not tell which version of {mapping.model} this deployment "
                f"ships: put it in the deployment payload (`version`) or deploy a tag like "
                f"`v3`.", now)
        return Received(deployment, mapped=True)
    try:
        gates = _link_gates(session, project, deployment, now)
    except (InvalidInput, Conflict, NotFound, Forbidden) as exc:
        _decide(session, deployment, DeploymentState.REJECT,
                f"Quorum could not open a gate for this deployment: {exc.message}", now)
        return Received(deployment, mapped=True)
    deployment.gate_ids = [gate.id for gate in gates]
    session.flush()
    for gate in gates:
        record_event(session, actor=GITHUB, action="gate.deployment_held", entity=gate,
                     project_id=project.id, after=_record(deployment))
        gate_service.post_in_thread(session, gate, "gate/deployment", d=deployment, event="held")
    decide(session, deployment, now)
    return Received(deployment, mapped=True, gates=tuple(gate.ref for gate in gates))


def _seen(session: Session, delivery_id: str) -> GithubDeployment | None:
    return session.scalars(select(GithubDeployment).where(
        GithubDeployment.delivery_id == delivery_id)).unique().first()


def _milestone(environment: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.:/+#&' -]+", "-", environment.lower()).strip(" -") or "env"
    return f"deploy to {cleaned}"[:80].rstrip()


def _link_gates(session: Session, project: Project, deployment: GithubDeployment,
                now: datetime) -> list[Gate]:
    """The gates that decide the deployment, opening one when there is none."""
    milestone = _milestone(deployment.environment)
    if deployment.model:
        assert deployment.version is not None
        found, _ = counted_gates(session, deployment.model, deployment.version,
                                 team_id=project.team_id)
        gates = [gate for gate in found if gate.project_id == project.id]
        if gates:
            return gates
    else:
        open_gate = session.scalars(select(Gate).where(
            Gate.project_id == project.id, Gate.milestone == milestone, Gate.model.is_(None),
            Gate.status == GateStatus.OPEN).order_by(Gate.id.desc()).limit(1)).unique().first()
        if open_gate is not None:
            return [open_gate]
    where = f"{deployment.repo}@{(deployment.sha or '')[:7] or deployment.ref or '?'}"
    draft = GateDraft(
        milestone=milestone, model=deployment.model, version=deployment.version,
        criteria=[f"GitHub deployment of {where} to {deployment.environment}"])
    return [gate_service.request_gate(session, project, GITHUB, draft, now).gate]


def _record(deployment: GithubDeployment) -> dict[str, Any]:
    return {"repo": deployment.repo, "environment": deployment.environment,
            "sha": deployment.sha, "ref": deployment.ref, "version": deployment.version,
            "state": deployment.state, "delivery": deployment.delivery_id}


# ---------------------------------------------------------------------------- deciding

def gate_decided(session: Session, gate: Gate) -> None:
    """A gate passed or failed: decide the deployments it holds."""
    held = session.scalars(
        select(GithubDeployment).where(GithubDeployment.project_id == gate.project_id,
                                       GithubDeployment.state == DeploymentState.WAITING)
        .with_for_update(of=GithubDeployment)
    ).unique().all()
    for deployment in held:
        if gate.id in (deployment.gate_ids or []):
            decide(session, deployment)


def decide(session: Session, deployment: GithubDeployment, now: datetime | None = None) -> None:
    """Approve once every linked gate passed; reject once one failed; else keep waiting."""
    if deployment.state != DeploymentState.WAITING or not deployment.gate_ids:
        return
    now = now or utcnow()
    gates = list(session.scalars(select(Gate).where(Gate.id.in_(deployment.gate_ids))
                                 .order_by(Gate.number)).unique())
    failed = [g for g in gates if g.status in FAILED]
    if failed:
        lines = [f"{g.ref} {g.milestone}: {g.status.replace('_', ' ')}"
                 + _objection(g) for g in failed]
        _decide(session, deployment, DeploymentState.REJECT,
                "Rejected in Quorum. " + "; ".join(lines), now)
    elif gates and all(g.status == GateStatus.PASSED for g in gates):
        lines = [f"{g.ref} {g.milestone} passed, approved by "
                 + ", ".join(f"{s.user_id} ({s.role})" for s in signers(g))
                 for g in gates]
        _decide(session, deployment, DeploymentState.APPROVE,
                "Approved in Quorum. " + "; ".join(lines), now)


def _objection(gate: Gate) -> str:
    if gate.status == GateStatus.WITHDRAWN:
        return f" by {gate.withdrawn_by}: {gate.withdrawn_reason}"
    changes = [s for s in gate.signoffs if s.decision == "changes"]
    return f" by {changes[0].user_id} ({changes[0].role}): {changes[0].reason}" if changes else ""


def _decide(session: Session, deployment: GithubDeployment, state: str, comment: str,
            now: datetime) -> None:
    deployment.state = state
    deployment.comment = comment[:COMMENT_LIMIT]
    deployment.next_attempt_at = now
    session.flush()


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0),
                                 MAX_RETRY_SECONDS))


@sweep("github_reviews", with_settings=True)
def send_reviews(session: Session, now: datetime, settings: Settings) -> bool:
    """Give GitHub the decided answers, each once; True when more are due."""
    if not (settings.github_app_id and settings.github_app_private_key):
        return False
    from bot.github_app import GithubApp, GithubError  # runtime edge: imported when used

    app = GithubApp(settings.github_app_id, settings.github_app_private_key,
                    settings.github_api_url)
    due = session.scalars(
        select(GithubDeployment).where(
            GithubDeployment.state.in_((DeploymentState.APPROVE, DeploymentState.REJECT)),
            GithubDeployment.next_attempt_at <= now)
        .order_by(GithubDeployment.next_attempt_at, GithubDeployment.id).limit(BATCH + 1)
        .with_for_update(skip_locked=True, of=GithubDeployment)
    ).unique().all()
    for deployment in due[:BATCH]:
        approved = deployment.state == DeploymentState.APPROVE
        try:
            app.review_deployment(deployment.callback_url, deployment.installation_id,
                                  deployment.environment, approved, deployment.comment or "")
        except GithubError as exc:
            deployment.attempts += 1
            deployment.last_error = exc.message
            if exc.retryable and deployment.attempts < MAX_ATTEMPTS:
                deployment.next_attempt_at = now + backoff(deployment.attempts)
                log.warning("GitHub review of %s %s not delivered (%s); retrying",
                            deployment.repo, deployment.environment, exc.message)
                continue
            deployment.state = DeploymentState.FAILED
            log.error("GitHub review of %s %s refused: %s", deployment.repo,
                      deployment.environment, exc.message)
            _tell_gates(session, deployment, "failed")
            continue
        deployment.state = DeploymentState.APPROVED if approved else DeploymentState.REJECTED
        deployment.answered_at = now
        deployment.next_attempt_at = None
        session.flush()
        _tell_gates(session, deployment, "approved" if approved else "rejected")
    return len(due) > BATCH


def _tell_gates(session: Session, deployment: GithubDeployment, event: str) -> None:
    gates = session.scalars(select(Gate).where(Gate.id.in_(deployment.gate_ids or [])))
    for gate in gates.unique():
        record_event(session, actor=GITHUB, action=f"gate.deployment_{event}", entity=gate,
                     project_id=gate.project_id, after=_record(deployment))
        gate_service.post_in_thread(session, gate, "gate/deployment", d=deployment, event=event)
    if not deployment.gate_ids and event != "approved":
        outbox.post_message(session, deployment.team_id, deployment.project.channel_id,
                            renderer.message("gate/deployment", d=deployment, event=event))
