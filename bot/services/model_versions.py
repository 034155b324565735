"""The model version a hypothesis or decision is about: validated once, for every register.

`v3` and `3` name the same version (`gates.normalize_version`); a record names both the model
and its version, or neither.
"""

from __future__ import annotations

from bot.errors import InvalidInput
from bot.services.gates import MODEL_PATTERN, VERSION_PATTERN, normalize_version


def clean_model_version(model: str | None, version: str | None) -> tuple[str, str]:
    """`(model, version)` as stored, `("", "")` for none; an error names the field at fault."""
    model = (model or "").strip()
    normalized = normalize_version(version) or ""
    if model and not MODEL_PATTERN.match(model):
        raise InvalidInput(f"`{model[:50]}` is not a model name: use letters, digits and "
                           f"`. _ - / :`, at most 100 characters.", field="model")
    if normalized and not VERSION_PATTERN.match(normalized):
        raise InvalidInput(f"`{normalized[:50]}` is not a version: use a number like `3` or a "
                           f"tag like `1.2.0`.", field="version")
    if normalized and not model:
        raise InvalidInput(f"Name the model that version {normalized} belongs to.",
                           field="model")
    if model and not normalized:
        raise InvalidInput(f"Give the version of {model} this is about, e.g. `3`.",
                           field="version")
    return model, normalized
