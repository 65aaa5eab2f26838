"""Settings: one typed object, loaded once at start-up.

Lookup order, highest first: command-line flag > environment variable >
``.env`` in the newsletter folder > default. Every setting is named
``NEWSLETTER_<FIELD>`` (``.env.example`` lists them all).
"""

from __future__ import annotations

import os
import re
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"


class Settings(BaseSettings):
    """Every knob of the tool. Field ``x`` is set by ``NEWSLETTER_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", env_file_encoding="utf-8"
    )

    root: Path = Field(default=Path("."), description="the newsletter folder")
    name: str = "PPRNet Research Digest"
    base_url: str = "https://newsletter.example.org"
    postal_address: str = ""
    also_this_month: bool = True
    timezone: str = "UTC"
    send_time: time = time(9, 0)
    from_address: str = Field(default="", alias="NEWSLETTER_FROM")
    reply_to: str = ""
    unsubscribe_mailto: str = ""
    secret: SecretStr = SecretStr("")
    database_url: str = ""
    outbox: str = ""
    send_unmatched: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name such as Europe/London")
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        return value.rstrip("/")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias
    return ENV_PREFIX + field.upper()


def load_settings(root: Path | None = None, **overrides: Any) -> Settings:
    """Read settings for the newsletter folder ``root`` (default: cwd).

    Raises ConfigError naming the variable and where to set it.
    """
    root = Path(root if root is not None else os.environ.get("NEWSLETTER_ROOT", "."))
    if not root.is_dir():
        raise ConfigError(f"newsletter folder {root} does not exist (set --root or NEWSLETTER_ROOT)")
    env_file = root / ".env"
    try:
        return Settings(
            _env_file=env_file if env_file.is_file() else None,  # type: ignore[call-arg]
            root=root,
            **overrides,
        )
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{_env_name(field)}: {msg}")
        where = f"the environment or {env_file}"
        raise ConfigError("invalid setting " + "; ".join(lines) + f" (set in {where})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file} is not UTF-8 text") from None
