"""The same-work baseline: a minimal Bolt app whose `/decision <title>` does the least durable
work that keeps Quorum's promise, written with the database driver itself (`sqlite3`, psycopg).

Served exactly like `quorum serve` (Quorum's Starlette app factory, `dispatch_until_ack` on the
listener threads, Bolt's `process_before_response=True`, the same uvicorn settings). Its
`/decision` finds (or creates) the channel's project and, in one transaction committed before
the ack, takes the next gapless reference, writes the decision row, an audit row and an outbox
row holding the card, into the same schema as Quorum (migrated by Alembic, so the same indexes
and triggers), then answers "Logged D-n". On PostgreSQL the four writes are one statement
(the counter upsert and three inserts in CTEs), the cheapest form there is; on SQLite they are
four statements in a `BEGIN IMMEDIATE` transaction. No ORM, no templates, no audit snapshot:
what Quorum adds over this is what its comparison measures.

    python bench/same_work_app.py --port 3002        (DATABASE_URL as for quorum serve)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

TEAM_PROJECT_SQL = "SELECT id FROM projects WHERE team_id = %s AND channel_id = %s"
PG_QUICK_LOG = """
WITH counter AS (
    INSERT INTO ref_counters (team_id, prefix, last_value) VALUES (%(team)s::text, 'D', 1)
    ON CONFLICT (team_id, prefix) DO UPDATE SET last_value = ref_counters.last_value + 1
    RETURNING last_value
), decision AS (
    INSERT INTO decisions (team_id, number, project_id, title, context, options, decision,
                           consequences, status, deciders, created_by, created_at, updated_at)
    SELECT %(team)s::text, last_value, %(project)s::bigint, %(title)s::text, '', '', '', '',
           'proposed', '[]', %(user)s::text, now(), now() FROM counter
    RETURNING id, number
), audit AS (
    INSERT INTO audit_events (team_id, project_id, actor, at, action, entity_type, entity_id,
                              entity_ref, after)
    SELECT %(team)s::text, %(project)s::bigint, %(user)s::text, now(), 'decision.created',
           'decisions', id, 'D-' || number,
           jsonb_build_object('ref', 'D-' || number, 'title', %(title)s::text)
    FROM decision
), queued AS (
    INSERT INTO outbox (team_id, method, payload, message_key, status, attempts,
                        next_attempt_at, created_at)
    SELECT %(team)s::text, 'chat.postMessage',
           jsonb_build_object('channel', %(channel)s::text,
                              'text', 'D-' || number || ' ' || %(title)s::text,
                              'blocks', jsonb_build_array(jsonb_build_object(
                                  'type', 'section', 'text', jsonb_build_object(
                                      'type', 'mrkdwn',
                                      'text', '*D-' || number || '* ' || %(title)s::text)))),
           'decision:' || id || ':card', 'pending', 0, now(), now()
    FROM decision
)
SELECT number FROM decision
"""


def _now() -> str:
    """A timestamp as SQLAlchemy stores one in SQLite."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SameWork:
    """The quick-log written with the driver: one connection per listener thread."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.sqlite = database_url.startswith("sqlite")
        self._local = threading.local()
        # As in Quorum: one writer at a time on SQLite, queued on a lock rather than SQLite's
        # sleeping busy handler.
        self._turn = threading.Lock() if self.sqlite else None

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.sqlite:
                connection = sqlite3.connect(self.url.split("///", 1)[1], isolation_level=None,
                                             check_same_thread=False, timeout=10)
                for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000",
                               "synchronous=NORMAL"):
                    connection.execute(f"PRAGMA {pragma}")
            else:
                import psycopg

                # libpq reads the same URL (the search_path option included) without the
                # SQLAlchemy driver name.
                connection = psycopg.connect(
                    self.url.replace("postgresql+psycopg://", "postgresql://", 1))
            self._local.connection = connection
        return connection

    def quick_log(self, team: str, channel: str, user: str, title: str) -> int:
        """Log a decision durably; its number."""
        connection = self._connection()
        if self.sqlite:
            assert self._turn is not None
            with self._turn:
                return self._sqlite_quick_log(connection, team, channel, user, title)
        with connection.transaction():
            project = self._pg_project(connection, team, channel)
            number = connection.execute(PG_QUICK_LOG, {
                "team": team, "project": project, "title": title, "user": user,
                "channel": channel}).fetchone()[0]
        return int(number)

    @staticmethod
    def _pg_project(connection: Any, team: str, channel: str) -> int:
        row = connection.execute(TEAM_PROJECT_SQL, (team, channel)).fetchone()
        if row is None:
            row = connection.execute(
                "INSERT INTO projects (team_id, channel_id, name, created_at, "
                "allow_self_approval, gate_reminder_hours, announce_new_versions) "
                "VALUES (%s, %s, %s, now(), false, 24, false) ON CONFLICT DO NOTHING "
                "RETURNING id", (team, channel, channel)).fetchone() \
                or connection.execute(TEAM_PROJECT_SQL, (team, channel)).fetchone()
        return int(row[0])

    @staticmethod
    def _sqlite_quick_log(connection: sqlite3.Connection, team: str, channel: str, user: str,
                          title: str) -> int:
        now = _now()
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute("SELECT id FROM projects WHERE team_id = ? AND "
                                     "channel_id = ?", (team, channel)).fetchone()
            if row is None:
                row = connection.execute(
                    "INSERT INTO projects (team_id, channel_id, name, created_at, "
                    "allow_self_approval, gate_reminder_hours, announce_new_versions) "
                    "VALUES (?, ?, ?, ?, 0, 24, 0) RETURNING id",
                    (team, channel, channel, now)).fetchone()
            project = row[0]
            number = connection.execute(
                "INSERT INTO ref_counters (team_id, prefix, last_value) VALUES (?, 'D', 1) "
                "ON CONFLICT (team_id, prefix) DO UPDATE SET last_value = last_value + 1 "
                "RETURNING last_value", (team,)).fetchone()[0]
            decision = connection.execute(
                "INSERT INTO decisions (team_id, number, project_id, title, context, options, "
                "decision, consequences, status, deciders, created_by, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, '', '', '', '', 'proposed', '[]', ?, ?, ?) RETURNING id",
                (team, number, project, title, user, now, now)).fetchone()[0]
            ref = f"D-{number}"
            connection.execute(
                "INSERT INTO audit_events (team_id, project_id, actor, at, action, entity_type, "
                "entity_id, entity_ref, after) VALUES (?, ?, ?, ?, 'decision.created', "
                "'decisions', ?, ?, ?)",
                (team, project, user, now, decision, ref,
                 json.dumps({"ref": ref, "title": title})))
            text = f"*{ref}* {_escaped(title)}"
            card = {"channel": channel, "text": text, "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
            connection.execute(
                "INSERT INTO outbox (team_id, method, payload, message_key, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, 'chat.postMessage', ?, ?, 'pending', "
                "0, ?, ?)", (team, json.dumps(card), f"decision:{decision}:card", now, now))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return int(number)


class SameClicks:
    """The two other hot paths written with the driver: Approve on a gate, a standup update."""

    def __init__(self, work: SameWork) -> None:
        self.work = work
        self.mark = "?" if work.sqlite else "%s"

    def _run(self, steps: Any) -> Any:
        """Run `steps(execute)` in one transaction (BEGIN IMMEDIATE on SQLite)."""
        connection = self.work._connection()
        if self.work.sqlite:
            assert self.work._turn is not None
            with self.work._turn:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = steps(lambda sql, args: connection.execute(sql, args))
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                return result
        with connection.transaction():
            return steps(lambda sql, args: connection.execute(sql, args))

    def approve(self, gate_id: int, user: str) -> str:
        """Sign the gate's one required role and pass it; what to tell the signer."""
        m, now = self.mark, _now() if self.work.sqlite else datetime.now(UTC)

        def steps(execute: Any) -> str:
            row = execute(f"SELECT team_id, project_id, number, status FROM gates WHERE id = {m}"
                          + ("" if self.work.sqlite else " FOR UPDATE"), (gate_id,)).fetchone()
            team, project, number, status = row
            if status != "open":
                return f"G-{number} is already {status}."
            execute(f"INSERT INTO gate_signoffs (gate_id, role, user_id, decision, at) "
                    f"VALUES ({m}, 'eng', {m}, 'approve', {m})", (gate_id, user, now))
            execute(f"UPDATE gates SET status = 'passed', passed_at = {m}, updated_at = {m} "
                    f"WHERE id = {m}", (now, now, gate_id))
            ref = f"G-{number}"
            execute(f"INSERT INTO audit_events (team_id, project_id, actor, at, action, "
                    f"entity_type, entity_id, entity_ref, before, after) VALUES ({m}, {m}, {m}, "
                    f"{m}, 'gate.approved', 'gates', {m}, {m}, {m}, {m})",
                    (team, project, user, now, gate_id, ref, json.dumps({"status": "open"}),
                     json.dumps({"status": "passed", "signer": user})))
            card = {"text": f"{ref} passed", "blocks": [{"type": "section", "text": {
                "type": "mrkdwn", "text": f"*{ref}* passed: approved by <@{user}>"}}]}
            for method, key in (("chat.update", f"gate:{gate_id}:card"),
                                ("chat.postMessage", f"gate:{gate_id}:card")):
                execute(f"INSERT INTO outbox (team_id, method, payload, message_key, status, "
                        f"attempts, next_attempt_at, created_at) VALUES ({m}, {m}, {m}, {m}, "
                        f"'pending', 0, {m}, {m})",
                        (team, method, json.dumps(card), key, now, now))
            return f"You approved {ref}; it passed."

        return str(self._run(steps))

    def standup_update(self, occurrence_id: int, user: str, values: dict[str, str]) -> None:
        """Store one person's update, queue it in the thread and the card's refresh."""
        m, now = self.mark, _now() if self.work.sqlite else datetime.now(UTC)

        def steps(execute: Any) -> None:
            team, project = execute(
                f"SELECT p.team_id, p.id FROM ritual_occurrences o JOIN projects p "
                f"ON p.id = o.project_id WHERE o.id = {m}", (occurrence_id,)).fetchone()
            key = f"modal:{user}"
            execute(f"INSERT INTO ritual_updates (occurrence_id, user_id, source, yesterday, "
                    f"today, blockers, text, message_ts, created_at, updated_at) VALUES ({m}, "
                    f"{m}, 'modal', {m}, {m}, {m}, '', {m}, {m}, {m}) ON CONFLICT "
                    f"(occurrence_id, message_ts) DO UPDATE SET today = excluded.today",
                    (occurrence_id, user, values["yesterday"], values["today"],
                     values["blockers"], key, now, now))
            execute(f"INSERT INTO audit_events (team_id, project_id, actor, at, action, "
                    f"entity_type, entity_id, entity_ref, after) VALUES ({m}, {m}, {m}, {m}, "
                    f"'standup.update', 'ritual_occurrences', {m}, {m}, {m})",
                    (team, project, user, now, occurrence_id, f"standup {occurrence_id}",
                     json.dumps(values)))
            text = f"<@{user}>: {_escaped(values['today'])}"
            for method, payload in (("chat.postMessage", {"text": text}),
                                    ("chat.update", {"text": f"{occurrence_id} updated"})):
                execute(f"INSERT INTO outbox (team_id, method, payload, message_key, status, "
                        f"attempts, next_attempt_at, created_at) VALUES ({m}, {m}, {m}, {m}, "
                        f"'pending', 0, {m}, {m})",
                        (team, method, json.dumps(payload), f"ritual:{occurrence_id}:card",
                         now, now))

        self._run(steps)


def build_same_work_app(database_url: str, signing_secret: str, client: WebClient) -> App:
    """The Bolt app, built as Quorum builds its own (signature checked, listeners run before
    the response)."""
    work = SameWork(database_url)
    app = App(client=client, signing_secret=signing_secret, token_verification_enabled=False,
              process_before_response=True)

    @app.command("/decision")
    def quick_log(ack, command) -> None:  # type: ignore[no-untyped-def]
        title = " ".join(command.get("text", "").split())[:150]
        number = work.quick_log(command["team_id"], command["channel_id"], command["user_id"],
                                title)
        ack(response_type="ephemeral", text=f"Logged *D-{number}*.")

    clicks = SameClicks(work)

    @app.action("gate_approve")
    def approve(ack, body, action, respond) -> None:  # type: ignore[no-untyped-def]
        ack()  # as Quorum: the button is acknowledged at once, the answer follows
        respond(response_type="ephemeral", replace_original=False,
                text=clicks.approve(int(action["value"]), body["user"]["id"]))

    @app.view("ritual_update_modal")
    def standup_update(ack, body, view) -> None:  # type: ignore[no-untyped-def]
        values = {block: next(iter(element.values())).get("value") or ""
                  for block, element in view["state"]["values"].items()}
        meta = json.loads(view.get("private_metadata") or "{}")
        clicks.standup_update(int(meta["occurrence_id"]), body["user"]["id"],
                              {name: values.get(name, "") for name in
                               ("yesterday", "today", "blockers")})
        ack()

    return app


def main() -> None:
    import uvicorn

    from bot.config import load_settings
    from bot.runtime import Runtime
    from bot.web import HeaderDeadlineProtocol, create_web_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings()
    runtime = Runtime.from_settings(settings)
    runtime.db.upgrade()  # Quorum's schema, so that the same indexes and triggers are paid
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    app = build_same_work_app(settings.database_url, settings.slack_signing_secret or "", client)
    web = create_web_app(runtime, app, worker=None)
    uvicorn.run(web, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                http=HeaderDeadlineProtocol)


if __name__ == "__main__":
    main()
