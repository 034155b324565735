"""Model bindings: a registered model's name bound to one project, whose channel hears its
promotions and alerts and whose gates count for it; and whether a project hears of MLflow's new
model versions.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import ModelBinding, Project
from bot.services import access
from bot.services.audit import record_event
from bot.services.model_versions import MODEL_PATTERN

BINDINGS_LIMIT = 100


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
