"""The project portal: every project's records, deployment history and model-version lineage
as web pages under `/portal`, signed in with Slack (see `routes`, `auth`, `access`, `queries`)."""

from bot.portal.routes import create_portal_app

__all__ = ["create_portal_app"]
