"""`quorum export REGISTER --format md --out DIR`: one Markdown file per record, ready to publish
(decisions as ADRs numbered like adr-tools, `0001-use-xgboost-for-churn.md`, in MADR's sections;
incidents one postmortem each)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bot.export import REGISTERS
from bot.render import renderer
from bot.services.directory import Names

SLUG_LIMIT = 60
# Registers whose one-record template differs from the stream's (which separates records).
FILE_TEMPLATES = {"decisions": "decision/madr.md.j2"}


def slug(text: str) -> str:
    """`Use XGBoost for churn!` → `use-xgboost-for-churn` (ASCII, as adr-tools names files)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words[:SLUG_LIMIT].rstrip("-") or "untitled"


def file_name(register: str, record: dict[str, Any], index: int) -> str:
    ref = str(record.get("ref") or index)
    title = str(record.get("title") or record.get("statement") or record.get("milestone")
                or record.get("model") or "")
    if register == "decisions":
        number = int(ref.rpartition("-")[2]) if ref.rpartition("-")[2].isdigit() else index
        return f"{number:04d}-{slug(title)}.md"
    return f"{slug(ref)}-{slug(title)}.md" if title else f"{slug(ref)}.md"


def write_files(session: Session, register: str, directory: Path) -> list[Path]:
    """Write one file per record of `register` into `directory` (created if need be); the
    paths written, in record order. Existing files of the same names are replaced."""
    read, template = REGISTERS[register]
    template = FILE_TEMPLATES.get(register, template)
    names = Names.load(session)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for index, record in enumerate(read(session), start=1):
        record = names.readable(record)
        name = file_name(register, record, index)
        stem, suffix, attempt = name[:-3], ".md", 1
        while name in taken:  # two workspaces' D-1: keep both
            attempt += 1
            name = f"{stem}-{attempt}{suffix}"
        taken.add(name)
        path = directory / name
        path.write_text(renderer.text(template, records=[record]), encoding="utf-8")
        written.append(path)
    return written
