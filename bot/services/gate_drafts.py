"""What a gate request says, checked before anything is read: the milestone, the model version,
the roles that must sign (and how many people of each), criteria, a due date, a wait and the
MLflow alias to move when the gate passes.

`GateDraft.validated()` needs no database; `gates.request_gate` then checks the draft against
the project (its role holders, the model's owner, the gates already there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from bot.errors import InvalidInput
from bot.services import roles as role_service
from bot.services.model_versions import MODEL_PATTERN, VERSION_PATTERN, normalize_version

# A milestone is one or more words (`launch`, `offline eval sign-off`), stored in lower case.
MILESTONE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:/+#&' -]{0,79}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_APPROVALS_PER_ROLE = 10
MAX_WAIT_SECONDS = 30 * 86400
CRITERIA_LINES = 20
CRITERION_LIMIT = 300
BULLET = re.compile(r"^(?:[-*•]\s+|\[\s?[xX ]?\]\s*|\d+[.)]\s+)")


def _split_roles(raw: Sequence[str] | str | None) -> list[str]:
    if raw is None:
        return list(role_service.DEFAULT_ROLES)
    items = re.split(r"[,\s]+", raw) if isinstance(raw, str) else list(raw)
    return [item for item in (i.strip() for i in items) if item]


def parse_roles(raw: Sequence[str] | str | None) -> dict[str, int]:
    """`ds:2,eng` → {"ds": 2, "eng": 1}: each required role and how many distinct people of it
    must approve, in the order given."""
    counts: dict[str, int] = {}
    for item in _split_roles(raw):
        name, colon, number = item.partition(":")
        role = role_service.normalize_role(name, field="roles")
        count = 1
        if colon:
            if not number.isdigit() or not 1 <= int(number) <= MAX_APPROVALS_PER_ROLE:
                raise InvalidInput(f"`{item[:40]}`: write a role and how many approvals it "
                                   f"needs, from 1 to {MAX_APPROVALS_PER_ROLE}, like `ds:2`.",
                                   field="roles")
            count = int(number)
        counts[role] = max(counts.get(role, 0), count)
    return counts


def _criteria_lines(raw: Sequence[str] | str | None) -> list[str]:
    lines = raw.splitlines() if isinstance(raw, str) else list(raw or [])
    return [BULLET.sub("", line.strip()).strip() for line in lines if line.strip()]


MAX_ROLES = 20


@dataclass
class GateDraft:
    """What the requester gives; `validated()` checks its shape before anything is read."""

    milestone: str
    model: str | None = None
    version: str | None = None
    roles: Sequence[str] | str | None = None  # None: the default ds, eng, pm
    criteria: Sequence[str] | str | None = None
    due_date: date | str | None = None
    wait_seconds: int | None = None  # `wait 2h`
    promote_alias: str | None = None  # `promote to champion`

    @property
    def role_counts(self) -> dict[str, int]:
        return parse_roles(self.roles)

    def validated(self) -> GateDraft:
        milestone = " ".join((self.milestone or "").split()).lower()
        if not milestone:
            raise InvalidInput("Name the milestone, e.g. `evaluation` or `launch`.",
                               field="milestone")
        if not MILESTONE_PATTERN.match(milestone):
            raise InvalidInput(
                f"`{self.milestone.strip()[:50]}` is not a milestone name: use words of "
                f"letters, digits, `-` or `_`, at most 80 characters (e.g. `launch` or "
                f"`offline eval sign-off`).", field="milestone")
        model = (self.model or "").strip() or None
        version = normalize_version(self.version)
        if model is not None and not MODEL_PATTERN.match(model):
            raise InvalidInput(
                f"`{model[:50]}` is not a model name: use letters, digits and `. _ - / :`, "
                f"at most 100 characters.", field="model")
        if version is not None and not VERSION_PATTERN.match(version):
            raise InvalidInput(
                f"`{version[:50]}` is not a version: use a number like `3` or a tag like "
                f"`1.2.0` or `rc1`.", field="version")
        if version is not None and model is None:
            raise InvalidInput(f"Name the model that version {version} belongs to.",
                               field="model")
        if model is not None and version is None:
            raise InvalidInput(f"Give the version of {model} this gate is for, e.g. `3`.",
                               field="version")
        counts = parse_roles(self.roles)
        roles = [f"{role}:{count}" if count > 1 else role for role, count in counts.items()]
        if not roles:
            raise InvalidInput("Name at least one role that must sign, e.g. `ds,eng,pm`.",
                               field="roles")
        if len(roles) > MAX_ROLES:
            # A card offers one button per waiting role, and Slack allows 25 in a row.
            raise InvalidInput(f"A gate can require at most {MAX_ROLES} roles; "
                               f"this one names {len(roles)}.", field="roles")
        criteria = _criteria_lines(self.criteria)
        if len(criteria) > CRITERIA_LINES:
            raise InvalidInput(f"There are {len(criteria)} criteria; keep it to "
                               f"{CRITERIA_LINES} lines.", field="criteria")
        for line in criteria:
            if len(line) > CRITERION_LIMIT:
                raise InvalidInput(f"A criterion is {len(line)} characters long; keep each "
                                   f"line within {CRITERION_LIMIT}.", field="criteria")
        due = self.due_date
        if isinstance(due, str):
            try:
                due = date.fromisoformat(due.strip()) if due.strip() else None
            except ValueError:
                raise InvalidInput(f"`{due[:20]}` is not a date like 2026-03-31.",
                                   field="due_date") from None
        wait = self.wait_seconds
        if wait is not None and not 60 <= wait <= MAX_WAIT_SECONDS:
            raise InvalidInput("The wait must be from 1 minute to 30 days, e.g. `wait 2h`.",
                               field="wait")
        alias = (self.promote_alias or "").strip() or None
        if alias is not None:
            if not ALIAS_PATTERN.match(alias):
                raise InvalidInput(f"`{alias[:50]}` is not an MLflow alias: use letters, "
                                   f"digits, `_`, `-` or `.`, like `champion`.", field="promote")
            if alias.lower().startswith("v") and alias[1:].isdigit():
                raise InvalidInput(f"`{alias}` looks like a version; MLflow reserves `v<n>`, "
                                   f"so pick an alias like `champion`.", field="promote")
            if model is None:
                raise InvalidInput(f"Say which model version to promote to `{alias}`: "
                                   f"`for <model> v<version> promote to {alias}`.",
                                   field="promote")
        return GateDraft(milestone=milestone, model=model, version=version, roles=roles,
                         criteria=criteria, due_date=due, wait_seconds=wait or None,
                         promote_alias=alias)
