"""Configuration from the environment (design §1), validated once at start."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(Exception):
    """A configuration problem, worded as the one line the user sees."""


DEFAULT_ALERT_SEVERITY_MAP = "critical=sev1,error=sev2,warning=sev3,info=sev4"
INCIDENT_SEVERITIES = ("sev1", "sev2", "sev3", "sev4")

# Environment variable of each field, for error messages.
ENV_NAMES = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_api_url": "SLACK_API_URL",
    "database_url": "DATABASE_URL",
    "webhook_token": "QUORUM_WEBHOOK_TOKEN",
    "mlflow_webhook_secret": "MLFLOW_WEBHOOK_SECRET",
    "default_channel": "QUORUM_DEFAULT_CHANNEL",
    "timezone": "QUORUM_TIMEZONE",
    "admins": "QUORUM_ADMINS",
    "alert_severity_map_raw": "QUORUM_ALERT_SEVERITY_MAP",
    "scheduler_tick_seconds": "QUORUM_SCHEDULER_TICK_SECONDS",
    "outbox_lease_seconds": "QUORUM_OUTBOX_LEASE_SECONDS",
    "slack_posts_per_minute": "QUORUM_SLACK_POSTS_PER_MINUTE",
    "log_format": "QUORUM_LOG_FORMAT",
    "host": "HOST",
    "public_url": "QUORUM_PUBLIC_URL",
    "slack_client_id": "SLACK_CLIENT_ID",
    "slack_client_secret": "SLACK_CLIENT_SECRET",
    "port": "PORT",
    "alertmanager_url": "ALERTMANAGER_URL",
    "alertmanager_username": "ALERTMANAGER_USERNAME",
    "alertmanager_password": "ALERTMANAGER_PASSWORD",
    "alertmanager_token": "ALERTMANAGER_TOKEN",
    "promotion_repeat_minutes": "QUORUM_PROMOTION_REPEAT_MINUTES",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "mlflow_tracking_token": "MLFLOW_TRACKING_TOKEN",
    "github_app_id": "GITHUB_APP_ID",
    "github_app_private_key": "GITHUB_APP_PRIVATE_KEY",
    "github_webhook_secret": "GITHUB_WEBHOOK_SECRET",
    "github_api_url": "GITHUB_API_URL",
}


class Settings(BaseSettings):
    """Every setting Quorum reads; see the table in README.md."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Every secret is left out of repr(): a logged or printed Settings must not carry one.
    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN", repr=False)
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET", repr=False)
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN", repr=False)
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field("sqlite:///quorum.db", alias="DATABASE_URL", repr=False)
    webhook_token: str | None = Field(None, alias="QUORUM_WEBHOOK_TOKEN", repr=False)
    mlflow_webhook_secret: str | None = Field(None, alias="MLFLOW_WEBHOOK_SECRET", repr=False)
    default_channel: str | None = Field(None, alias="QUORUM_DEFAULT_CHANNEL")
    timezone: str = Field("UTC", alias="QUORUM_TIMEZONE")
    admins_raw: str = Field("", alias="QUORUM_ADMINS")
    # Alertmanager's `severity` label → incident severity, as `label=sevN` pairs.
    alert_severity_map_raw: str = Field(DEFAULT_ALERT_SEVERITY_MAP,
                                        alias="QUORUM_ALERT_SEVERITY_MAP")
    # How often the scheduler looks for due work (rituals, reminders); tests shorten it.
    scheduler_tick_seconds: float = Field(30.0, alias="QUORUM_SCHEDULER_TICK_SECONDS", gt=0,
                                          le=3600)
    # How long a worker holds an outbox row it is delivering before another process may take it
    # over (a dead worker's rows wait this long). The worker never waits on Slack longer than a
    # third of it, so a live delivery always finishes inside its lease.
    outbox_lease_seconds: float = Field(60.0, alias="QUORUM_OUTBOX_LEASE_SECONDS", ge=3,
                                        le=3600)
    # The workspace's chat.postMessage rate that every replica together keeps to (`bot.pacing`);
    # unset, posts go as fast as Slack takes them and a 429's Retry-After is waited out.
    slack_posts_per_minute: float | None = Field(None, alias="QUORUM_SLACK_POSTS_PER_MINUTE",
                                                 gt=0, le=60000)
    # "json": one JSON object a line (time, level, logger, message, request id, team, command,
    # latency), for log pipelines; "text": plain lines for a terminal.
    log_format: Literal["text", "json"] = Field("text", alias="QUORUM_LOG_FORMAT")
    # The MLflow server whose aliases Quorum moves when a gate with `promote to` passes.
    mlflow_tracking_uri: str | None = Field(None, alias="MLFLOW_TRACKING_URI")
    mlflow_tracking_token: str | None = Field(None, alias="MLFLOW_TRACKING_TOKEN", repr=False)
    # Quorum as a GitHub App deployment protection rule (`POST /hooks/github`).
    github_app_id: str | None = Field(None, alias="GITHUB_APP_ID")
    github_app_private_key: str | None = Field(None, alias="GITHUB_APP_PRIVATE_KEY", repr=False)
    github_webhook_secret: str | None = Field(None, alias="GITHUB_WEBHOOK_SECRET", repr=False)
    github_api_url: str = Field("https://api.github.com", alias="GITHUB_API_URL")
    host: str = Field("0.0.0.0", alias="HOST")
    # The portal (`bot.portal`): where people reach Quorum (links on cards, the OpenID redirect)
    # and the app's OAuth credentials for Sign in with Slack. Without the three, no portal.
    public_url: str | None = Field(None, alias="QUORUM_PUBLIC_URL")
    slack_client_id: str | None = Field(None, alias="SLACK_CLIENT_ID")
    slack_client_secret: str | None = Field(None, alias="SLACK_CLIENT_SECRET", repr=False)
    port: int = Field(3000, alias="PORT", ge=1, le=65535)
    # Alertmanager's API v2, where silences made from an incident's card go (none: no buttons).
    alertmanager_url: str | None = Field(None, alias="ALERTMANAGER_URL")
    alertmanager_username: str | None = Field(None, alias="ALERTMANAGER_USERNAME")
    alertmanager_password: str | None = Field(None, alias="ALERTMANAGER_PASSWORD", repr=False,
                                               validate_default=True)
    alertmanager_token: str | None = Field(None, alias="ALERTMANAGER_TOKEN", repr=False,
                                            validate_default=True)
    # The same model, version and target announced again within this many minutes edits the
    # first announcement instead of posting another (0: every announcement posts).
    promotion_repeat_minutes: float = Field(60.0, alias="QUORUM_PROMOTION_REPEAT_MINUTES",
                                            ge=0, le=10080)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: str | None) -> str | None:
        if value and not value.startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value or None

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: str | None) -> str | None:
        if value and not value.startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value or None

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("alertmanager_url")
    @classmethod
    def _alertmanager_url_shape(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
            raise ValueError("must be an http(s) URL, e.g. http://alertmanager:9093")
        return value.rstrip("/")

    @field_validator("alertmanager_password")
    @classmethod
    def _basic_auth_pair(cls, value: str | None, info: Any) -> str | None:
        value = value or None
        if bool(value) != bool(info.data.get("alertmanager_username")):
            raise ValueError("give it together with ALERTMANAGER_USERNAME (basic auth needs both)")
        return value

    @field_validator("alertmanager_token")
    @classmethod
    def _one_auth(cls, value: str | None, info: Any) -> str | None:
        value = value or None
        if value and info.data.get("alertmanager_username"):
            raise ValueError("give either a bearer token or ALERTMANAGER_USERNAME/PASSWORD, "
                             "not both")
        return value

    @field_validator("mlflow_tracking_uri", "github_api_url")
    @classmethod
    def _http_url_shape(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return "https://api.github.com" if info.field_name == "github_api_url" else None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("github_app_id")
    @classmethod
    def _app_id_shape(cls, value: str | None) -> str | None:
        if value and not value.strip().isdigit():
            raise ValueError("must be the GitHub App's numeric id")
        return (value or "").strip() or None

    @field_validator("github_app_private_key")
    @classmethod
    def _private_key_shape(cls, value: str | None) -> str | None:
        """PEM text, or the path of a file holding it; checked to be an RSA private key."""
        if not value or not value.strip():
            return None
        text = value.strip()
        if "-----BEGIN" not in text:
            try:
                with open(text, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                raise ValueError("is neither PEM text nor a readable file holding it") from None
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            # Never the library's own words: they might quote part of the key.
            raise ValueError("is not a PEM-encoded private key without a password") from None
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("must be the App's RSA private key (GitHub signs with RS256)")
        return text

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or any(c in value for c in "?#<> "):
            raise ValueError("must be an http(s) URL such as https://quorum.example.com")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: str) -> str:
        return str(normalize_database_url(value).render_as_string(hide_password=False))

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use Area/City, e.g. Europe/Paris)"
            ) from None
        return value

    @field_validator("admins_raw")
    @classmethod
    def _admins_name_someone(cls, value: str) -> str:
        # Set but naming nobody (",", " ") would read as unset, and make every member an admin.
        if value and not any(part.strip() for part in value.split(",")):
            raise ValueError("names no user id: give comma-separated Slack user ids "
                             "(e.g. U0123ABCD,U0456EFGH), or leave it unset")
        return value

    @field_validator("alert_severity_map_raw")
    @classmethod
    def _severity_map_shape(cls, value: str) -> str:
        parse_severity_map(value)
        return value

    @cached_property
    def alert_severity_map(self) -> dict[str, str]:
        return parse_severity_map(self.alert_severity_map_raw)

    @property
    def promotion_repeat_window(self) -> timedelta:
        return timedelta(minutes=self.promotion_repeat_minutes)

    @cached_property
    def admins(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.admins_raw.split(",") if part.strip())

    @property
    def portal_enabled(self) -> bool:
        """Sign in with Slack is configured: client id, client secret and public URL."""
        return bool(self.slack_client_id and self.slack_client_secret and self.public_url)

    def require(self, *fields: str, purpose: str) -> None:
        """Stop with a ConfigError naming the first missing variable that `purpose` needs."""
        for name in fields:
            if not getattr(self, name):
                raise ConfigError(f"{ENV_NAMES[name]}: required {purpose}")


def parse_severity_map(raw: str) -> dict[str, str]:
    """`critical=sev1,warning=sev3` → `{"critical": "sev1", "warning": "sev3"}`."""
    mapping: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        label, _, severity = part.partition("=")
        label, severity = label.strip().lower(), severity.strip().lower()
        if not label or severity not in INCIDENT_SEVERITIES:
            raise ValueError(f"{part.strip()!r} is not a label=severity pair "
                             f"(e.g. critical=sev1,warning=sev3; severities are sev1 to sev4)")
        mapping[label] = severity
    return mapping


def normalize_database_url(raw: str) -> URL:
    """Parse a database URL, mapping plain `postgres://` URLs to the psycopg 3 driver."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        # Never the parser's own words: they may quote a part of the URL, password included.
        raise ValueError("is not a valid SQLAlchemy URL (e.g. sqlite:///quorum.db or "
                         "postgresql://user:password@host:5432/quorum)") from None
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError("must be a sqlite:// or postgresql:// URL")
    return url


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError with one clear line when invalid."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        name = ENV_NAMES.get(field, field.upper() if field != "admins_raw" else "QUORUM_ADMINS")
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message[:1].lower()}{message[1:]}") from None
