"""Configuration: defaults, and one clear line naming the variable when something is wrong."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///quorum.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert (settings.host, settings.port, settings.timezone) == ("0.0.0.0", 3000, "UTC")
    assert settings.admins == frozenset()
    assert settings.outbox_lease_seconds == 60


def test_values_are_read_and_normalised() -> None:
    settings = load_settings(DATABASE_URL="postgres://u:p@db:5432/quorum",
                             SLACK_API_URL="http://127.0.0.1:9000/api",
                             QUORUM_ADMINS=" U1, U2 ,,", PORT="8080")
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/quorum"
    assert settings.slack_api_url == "http://127.0.0.1:9000/api/"
    assert settings.admins == {"U1", "U2"} and settings.port == 8080


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: must be a sqlite:// or postgresql:// URL"),
    ("DATABASE_URL", "::nonsense::", "DATABASE_URL: is not a valid SQLAlchemy URL"),
    ("PORT", "eighty", "PORT: input should be a valid integer"),
    ("PORT", "70000", "PORT: input should be less than or equal to 65535"),
    ("QUORUM_TIMEZONE", "Mars/Olympus", "QUORUM_TIMEZONE: unknown time zone 'Mars/Olympus'"),
    ("SLACK_BOT_TOKEN", "xoxp-user", "SLACK_BOT_TOKEN: must be a bot token starting with xoxb-"),
    ("SLACK_APP_TOKEN", "xoxb-1", "SLACK_APP_TOKEN: must be an app-level token"),
    ("SLACK_API_URL", "ftp://x", "SLACK_API_URL: must be an http(s) URL"),
    ("MLFLOW_TRACKING_URI", "mlflow:5000", "MLFLOW_TRACKING_URI: must be an http(s) URL"),
    ("GITHUB_API_URL", "api.github.com", "GITHUB_API_URL: must be an http(s) URL"),
    ("GITHUB_APP_ID", "my-app", "GITHUB_APP_ID: must be the GitHub App's numeric id"),
    ("GITHUB_APP_PRIVATE_KEY", "/no/such/key.pem", "GITHUB_APP_PRIVATE_KEY: is neither PEM "
                                                   "text nor a readable file holding it"),
    ("QUORUM_OUTBOX_LEASE_SECONDS", "1", "QUORUM_OUTBOX_LEASE_SECONDS: input should be greater "
                                         "than or equal to 3"),
    # Set, yet naming no one: read as unset it would make every member an admin.
    ("QUORUM_ADMINS", ",", "QUORUM_ADMINS: names no user id"),
    ("QUORUM_ADMINS", " ", "QUORUM_ADMINS: names no user id"),
    ("QUORUM_ADMINS", " , ,, ", "QUORUM_ADMINS: names no user id"),
    ("QUORUM_OUTBOX_LEASE_SECONDS", "soon", "QUORUM_OUTBOX_LEASE_SECONDS: input should be a "
                                            "valid number"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                      message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_require_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SLACK_SIGNING_SECRET: required to verify"):
        load_settings().require("slack_signing_secret", purpose="to verify requests")


def test_secrets_stay_out_of_repr() -> None:
    settings = load_settings(SLACK_SIGNING_SECRET="s3cret", QUORUM_WEBHOOK_TOKEN="hook-token",
                             DATABASE_URL="postgresql://u:dbpass@h/d")
    assert "s3cret" not in repr(settings) and "hook-token" not in repr(settings)
    assert "dbpass" not in repr(settings)


def test_the_alert_severity_map() -> None:
    assert load_settings().alert_severity_map == {
        "critical": "sev1", "error": "sev2", "warning": "sev3", "info": "sev4"}
    custom = load_settings(QUORUM_ALERT_SEVERITY_MAP=" Page=SEV1, ticket=sev4 ,")
    assert custom.alert_severity_map == {"page": "sev1", "ticket": "sev4"}
    for bad in ("critical=sev9", "critical", "=sev1"):
        with pytest.raises(ConfigError, match=r"^QUORUM_ALERT_SEVERITY_MAP: .* is not a "
                                              r"label=severity pair"):
            load_settings(QUORUM_ALERT_SEVERITY_MAP=bad)
