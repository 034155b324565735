"""Decision search by index on PostgreSQL: a trigram index (pg_trgm) on the searched text, so the
substring half of each word's test (`odel` finds `model`) no longer reads the project's every row.

Skipped, with a warning, where pg_trgm cannot be installed (not shipped with the server, or the
database user may not create it): search stays correct, only slower on large projects.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

# Must stay the same expression as `bot.services.decisions.SEARCHED_TEXT`: PostgreSQL uses an
# expression index only for a query that repeats its expression.
SEARCHED_TEXT = ("lower(coalesce(title, '') || ' ' || coalesce(context, '') || ' ' || "
                 "coalesce(decision, '') || ' ' || coalesce(consequences, ''))")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = _trigram_schema(bind)
    if schema is None:
        return
    operators = f"{bind.dialect.identifier_preparer.quote_identifier(schema)}.gin_trgm_ops"
    op.execute(f"CREATE INDEX ix_decisions_trigram ON decisions "
               f"USING gin (({SEARCHED_TEXT}) {operators})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The extension stays: other schemas of the database may use it.
        op.execute("DROP INDEX IF EXISTS ix_decisions_trigram")


def _trigram_schema(bind: sa.Connection) -> str | None:
    """The schema holding pg_trgm, installing it into `public` if the database lacks it.

    An extension exists once per database; naming its schema lets every Quorum schema of the
    database (one per test run, say) use it whatever its own search_path."""
    found = _installed_schema(bind)
    if found:
        return found
    if not bind.scalar(sa.text("SELECT count(*) FROM pg_available_extensions "
                               "WHERE name = 'pg_trgm'")):
        log.warning("pg_trgm is not available on this PostgreSQL server: decision search "
                    "will read every decision of a project")
        return None
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION pg_trgm SCHEMA public"))
    except sa.exc.DBAPIError as error:
        found = _installed_schema(bind)  # another migration of the database installed it first
        if found:
            return found
        log.warning("could not install pg_trgm (%s): decision search will read every decision "
                    "of a project", str(error.orig).splitlines()[0])
        return None
    return "public"


def _installed_schema(bind: sa.Connection) -> str | None:
    return bind.scalar(sa.text("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                               "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"))
