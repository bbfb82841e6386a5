"""Process settings from environment variables. Secrets come only from here, never from the YAML file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.platform.redis_client import RedisUrlError, parse_redis_url

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class SettingsError(Exception):
    """The environment is missing or has a wrong value; `problems` lists each, naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseModel):
    """What `chatops serve` reads from the environment."""

    model_config = ConfigDict(frozen=True)

    slack_bot_token: SecretStr = Field(alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default=DEFAULT_SLACK_API_URL, alias="SLACK_API_URL")
    # How long one Slack Web API call may take before it counts as failed (and is retried where that is safe).
    slack_api_timeout: float = Field(default=10.0, ge=0.5, le=120, alias="SLACK_API_TIMEOUT")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    config_path: str = Field(default="./chatops.yaml", alias="CHATOPS_CONFIG")
    host: str = Field(default="0.0.0.0", alias="HOST")
    port: int = Field(default=3000, ge=0, le=65535, alias="PORT")
    # Worker processes on the one port (each a whole replica; bot/shell/workers.py). `chatops serve --workers N`
    # overrides it. The usual name for it (Heroku, gunicorn, uvicorn).
    workers: int = Field(default=1, ge=1, le=64, alias="WEB_CONCURRENCY")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", alias="LOG_LEVEL")
    log_format: Literal["json", "console"] = Field(default="json", alias="LOG_FORMAT")
    # uvloop where installed (less CPU per request), or asyncio's own loop (bot/shell/event_loop.py).
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(default="auto", alias="CHATOPS_EVENT_LOOP")

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp- (it turns on Socket Mode)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("redis_url")
    @classmethod
    def _redis_url_shape(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_redis_url(value)
            except RedisUrlError as error:
                raise ValueError(str(error).removeprefix("REDIS_URL: ")) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("event_loop", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def socket_mode(self) -> bool:
        """Socket Mode is on when an app-level token is configured."""
        return self.slack_app_token is not None

    def secrets(self) -> list[str]:
        """The secret values, so the log filter can mask them wherever they appear."""
        values = [self.slack_bot_token, self.slack_signing_secret, self.slack_app_token]
        return [v.get_secret_value() for v in values if v is not None]


@dataclass(frozen=True)
class _Env:
    names: tuple[str, ...] = tuple(field.alias for field in Settings.model_fields.values() if field.alias is not None)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Reads settings from `environ`; raises SettingsError naming every bad or missing variable."""
    raw = {name: environ[name] for name in _Env().names if environ.get(name, "") != ""}
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]) if item["loc"] else "environment"
            if item["type"] == "missing":
                problems.append(f"{name} is not set: {_HINTS.get(name, 'it is required')}")
            else:
                problems.append(f"{name}: {str(item['msg']).removeprefix('Value error, ')}")
        raise SettingsError(problems) from None
    if not settings.socket_mode and settings.slack_signing_secret is None:
        raise SettingsError([f"SLACK_SIGNING_SECRET is not set: {_HINTS['SLACK_SIGNING_SECRET']}"])
    if settings.redis_url is None:
        raise SettingsError(["REDIS_URL is not set: e.g. redis://localhost:6379/0 (`chatops dev` starts its own)"])
    return settings


_HINTS = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & Permissions page",
    "SLACK_SIGNING_SECRET": "the Signing Secret from your Slack app's Basic Information page (HTTP mode needs it)",
}
