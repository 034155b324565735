"""Model names and versions as Quorum writes them, and the model version a record is about,
validated once for every register.

`v3` and `3` name the same version (`normalize_version`); a record names both the model
and its version, or neither.
"""

from __future__ import annotations

import re

from bot.errors import InvalidInput

MODEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def normalize_version(raw: str | None) -> str | None:
    """`v3` and `3` name the same version; tags such as `1.2.0` or `rc1` stay as typed."""
    version = (raw or "").strip()
    if len(version) > 1 and version[0] in "vV" and version[1].isdigit():
        version = version[1:]
    return version or None


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
