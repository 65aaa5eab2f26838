"""Settings: one typed object, loaded once at start-up.

Lookup order, highest first: command-line flag > environment variable >
``.env`` in the newsletter folder > default. Every setting is named
``NEWSLETTER_<FIELD>`` (``.env.example`` lists them all).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from datetime import time, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigError

ENV_PREFIX = "NEWSLETTER_"


class Settings(BaseSettings):
    """Every knob of the tool. Field ``x`` is set by ``NEWSLETTER_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_file_encoding="utf-8")

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
    # Requests in the air at once while sending (each batch still claimed before it leaves).
    send_connections: int = Field(default=1, ge=1, le=8)
    track_opens: bool = False
    track_clicks: bool = False
    sendgrid_api_key: SecretStr = Field(default=SecretStr(""), alias="SENDGRID_API_KEY")
    sendgrid_api_host: str = Field(default="https://api.sendgrid.com", alias="SENDGRID_API_HOST")
    sendgrid_asm_group_id: int | None = Field(default=None, alias="SENDGRID_ASM_GROUP_ID")
    sendgrid_timeout: float = Field(default=30.0, gt=0, alias="SENDGRID_TIMEOUT")
    sendgrid_max_attempts: int = Field(default=5, ge=1, le=20, alias="SENDGRID_MAX_ATTEMPTS")
    sendgrid_backoff: float = Field(default=1.0, ge=0, alias="SENDGRID_BACKOFF")
    author_email: str = ""
    misfire_grace: timedelta = timedelta(days=3)
    # `newsletter serve` (the readers' pages)
    site: str = ""  # the built archive it serves; default <root>/site
    trusted_proxies: str = "127.0.0.1"  # addresses whose X-Forwarded-For is believed
    form_rate_limit: int = Field(default=20, ge=1)  # form posts per client address per minute
    sendgrid_webhook_public_key: SecretStr = Field(default=SecretStr(""), alias="SENDGRID_WEBHOOK_PUBLIC_KEY")

    @field_validator("author_email")
    @classmethod
    def _an_address(cls, value: str) -> str:
        if value.strip() and "@" not in parseaddr(value)[1]:
            raise ValueError(f"{value!r} is not an email address such as editor@example.org")
        return value.strip()

    @field_validator("misfire_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        # "3d", "12h", "90m", "30s" or plain seconds; ISO 8601 ("P3D") is left to pydantic.
        if isinstance(value, str) and not value.strip().upper().startswith("P"):
            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value.lower())
            if not found:
                raise ValueError(f"{value!r} is not a duration such as 3d, 12h, 90m or 3600 (seconds)")
            return timedelta(seconds=float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found[2]])
        return value

    @field_validator("misfire_grace")
    @classmethod
    def _grace_range(cls, value: timedelta) -> timedelta:
        # Past 27 days a late run could land in the next month and send the wrong issue.
        if not timedelta(seconds=1) <= value <= timedelta(days=27):
            raise ValueError(f"{value.total_seconds() / 86400:g} days is out of range: from 1 second to 27 days")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name such as Europe/London") from None
        return value

    @field_validator("send_time")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError(
                f"{value.isoformat()} has a UTC offset; give a plain local time such as 09:00 and the zone in "
                "NEWSLETTER_TIMEZONE (an offset cannot follow summer and winter time)"
            )
        return value

    @field_validator("sendgrid_asm_group_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("base_url", "sendgrid_api_host")
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

    @property
    def ledger_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.root / 'state' / 'newsletter.db').resolve()}"

    @property
    def site_dir(self) -> Path:
        return self.root / self.site if self.site else self.root / "site"

    @property
    def outbox_dir(self) -> Path:
        return self.root / self.outbox if self.outbox else self.root / "outbox"


SAMPLE_FROM = "PPRNet Research Digest <digest@newsletter.example.org>"
SAMPLE_SECRET = "sample-secret-do-not-use-for-real-sends"
SAMPLE_UNSUBSCRIBE_MAILTO = "unsubscribe@newsletter.example.org"
SAMPLE_POSTAL_ADDRESS = "PPRNet Research Digest (sample address), 1 Example Street, Ottawa ON K1A 0A1, Canada"
REQUIRED_FOR_REAL_SEND = ("from_address", "postal_address", "secret", "sendgrid_asm_group_id")


def unset_for_sending(settings: Settings) -> list[str]:
    """Names of the settings a real send needs that are not set."""
    unset = []
    for field in REQUIRED_FOR_REAL_SEND:
        value = getattr(settings, field)
        if not (value.get_secret_value() if isinstance(value, SecretStr) else value is not None and value != ""):
            unset.append(_env_name(field))
    return unset


# A secret signs every reader's links: guessable, and anyone could unsubscribe
# anyone. The estimate below undercounts random text (32 hex digits, 128 random
# bits, score about 120), so the bar is set under that.
MIN_SECRET_BITS = 100
MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def weak_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign readers' links (None: strong enough).

    Estimated as its length times its characters' Shannon entropy: random
    text of 32 bytes or more passes; a word, a date or a repeated pattern fails.
    """
    if not secret:
        return None
    counts = Counter(secret)
    bits = -sum(n * math.log2(n / len(secret)) for n in counts.values())
    if len(secret.encode("utf-8")) < 32 or bits < MIN_SECRET_BITS:
        return (
            f"NEWSLETTER_SECRET is too weak to sign readers' links: use at least 32 random bytes; "
            f"make one with {MAKE_A_SECRET}"
        )
    return None


def with_sample_defaults(settings: Settings) -> tuple[Settings, list[str]]:
    """Fill the sender, postal address and secret with samples (outbox only); say which were filled."""
    filled: dict[str, Any] = {}
    if not settings.from_address:
        filled["from_address"] = SAMPLE_FROM
    if not settings.postal_address.strip():
        filled["postal_address"] = SAMPLE_POSTAL_ADDRESS
    if not settings.secret.get_secret_value():
        filled["secret"] = SecretStr(SAMPLE_SECRET)
    if not settings.unsubscribe_mailto:
        filled["unsubscribe_mailto"] = SAMPLE_UNSUBSCRIBE_MAILTO
    return settings.model_copy(update=filled), [_env_name(f) for f in filled]


def _env_name(field: str) -> str:
    if any(info.alias == field for info in Settings.model_fields.values()):
        return field  # pydantic reports aliased fields by their alias
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
