"""GitHub deployment protection rules: a deployment waits for its project's gates.

Placeholder of the decision step; the webhook and the callback are added below.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import DeploymentState, Gate, GithubDeployment


def gate_decided(session: Session, gate: Gate) -> None:
    """A gate passed or failed: decide the deployments it holds."""
    held = session.scalars(
        select(GithubDeployment).where(GithubDeployment.project_id == gate.project_id,
                                       GithubDeployment.state == DeploymentState.WAITING)
    ).unique().all()
    for deployment in held:
        if gate.id in (deployment.gate_ids or []):
            decide(session, deployment)


def decide(session: Session, deployment: GithubDeployment) -> None:
    """Filled in with the webhook."""
