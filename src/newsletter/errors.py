"""Exceptions raised by newsletter.

    NewsletterError            base of everything we raise on purpose
    ├── ConfigError            a setting is missing or invalid; never retried
    │   └── SuppressionsUnavailable   the key may not read the provider's suppression lists
    ├── ContentError           issue sources fail validation; carries Problems
    │   └── IssueNotFound      no such issue folder
    ├── RenderError            a template failed to render or compile
    └── DeliveryError          a batch was not delivered
        ├── BatchFailed        the provider refused it, or never got it
        └── BatchInDoubt       it was handed over and no answer came

Library errors are translated into these inside the module that calls the
library; only ``cli`` turns them into messages and exit codes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a file, printed as ``path:line: severity: message``."""

    path: Path
    line: int
    severity: Severity
    message: str

    def format(self, root: Path | None = None) -> str:
        path = self.path
        if root is not None:
            with contextlib.suppress(ValueError):
                path = path.relative_to(root)
        return f"{path}:{self.line}: {self.severity}: {self.message}"


def errors_in(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


class NewsletterError(Exception):
    """Base class: a failure we expected and can explain to the user."""


class ConfigError(NewsletterError):
    """A setting is missing or invalid."""


class SuppressionsUnavailable(ConfigError):
    """The provider keeps suppression lists, but this key may not read them (a send can go on)."""


class ContentError(NewsletterError):
    """Issue sources failed validation."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class IssueNotFound(ContentError):
    """No issue folder by that name."""


class RenderError(NewsletterError):
    """A template failed; the message names the template and line."""


class DeliveryError(NewsletterError):
    """A batch did not go out as asked; ``reason`` is safe to show and store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchFailed(DeliveryError):
    """The provider refused the batch or never received it: safe to retry later."""


class BatchInDoubt(DeliveryError):
    """The batch may have been delivered: never resend without being asked."""
