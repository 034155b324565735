"""The models package: the migrations build exactly the models, and each register's module is
imported when it is first used (what `quorum gate check` starts fast on)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import bot.models
from bot.database import Database
from bot.models import REGISTERS, schema

# Full-text search is built by migration 0001 for each backend and is deliberately not modelled:
# SQLite's FTS5 tables, PostgreSQL's generated tsvector column and its two indexes.
FULL_TEXT = ("decisions_fts", "search_vector", "ix_decisions_trigram")


def test_the_migrations_build_exactly_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, schema())
    assert [d for d in diffs if not any(name in repr(d) for name in FULL_TEXT)] == []


def test_every_register_name_comes_from_its_module() -> None:
    for module, names in REGISTERS.items():
        for name in names:
            assert getattr(bot.models, name) is getattr(
                importlib.import_module(f"bot.models.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'Gates'"):
        bot.models.Gates  # noqa: B018


def _fresh_process(program: str, database_url: str) -> list[str]:
    """The `bot.models.*` modules a new interpreter has loaded after running `program`."""
    done = subprocess.run(
        [sys.executable, "-c", program + "\nimport sys\nprint(' '.join(sorted(name for name in "
         "sys.modules if name.startswith('bot.models.'))))"],
        capture_output=True, text=True, check=True, env={"DATABASE_URL": database_url,
                                                        "PATH": "/usr/bin:/bin"})
    return done.stdout.split()


def test_a_command_loads_only_the_registers_it_queries(db: Database) -> None:
    query = ("from sqlalchemy import create_engine, select\n"
             "from sqlalchemy.orm import Session\n"
             "from bot.models import {name}\n"
             "with Session(create_engine('{url}')) as session:\n"
             "    session.scalars(select({name})).all()\n")
    url = db.engine.url.render_as_string(hide_password=False)
    # Gates map to projects and sign-offs only.
    assert _fresh_process(query.format(name="Gate", url=url), url) == [
        "bot.models.core", "bot.models.gates"]
    # Decisions and hypotheses map to each other: either brings the other.
    for name in ("Decision", "Hypothesis"):
        assert _fresh_process(query.format(name=name, url=url), url) == [
            "bot.models.core", "bot.models.decisions", "bot.models.hypotheses"]
