"""The README's command transcripts, run: what it shows is what the commands print.

A transcript is a fenced block whose first line is ``$ newsletter ...``: one or more commands
(lines starting with ``$ ``), each followed by its output. Each transcript runs in a fresh copy of
the sample folder (the ``samples`` fixture: the repository's issues/, templates/ and subscribers/)
as the current directory, the way the README shows them (no ``--root``), its commands in order.
The output compared is what a terminal shows: stdout and stderr as they interleave. It must equal
the transcript exactly; there is no normalisation, because run from the folder the commands print
relative paths (``site/index.html``), just as in the README.

A transcript the samples alone cannot produce gets its situation built by ``SETUPS``, keyed by its
first command, from what the README says in the text above it; a new transcript without an entry
runs on the plain samples. Transcripts of other programs (``$ .venv/bin/python bench/...``, whose
figures are timings) are not run.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.schedule import policy

from conftest import REPO, Newsletter

README = REPO / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Step:
    command: str  # as typed, without "$ "
    output: str  # as printed, every line ending in a newline


@dataclass(frozen=True)
class Transcript:
    line: int  # of the README, where the block starts
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return self.steps[0].command


def transcripts() -> list[Transcript]:
    text = README.read_text(encoding="utf-8")
    found = []
    for block in FENCE.finditer(text):
        lines = block.group(1).splitlines()
        if not lines or not lines[0].startswith("$ newsletter "):
            continue
        steps: list[Step] = []
        for line in lines:
            if line.startswith("$ "):
                steps.append(Step(line[2:], ""))
            else:
                steps[-1] = Step(steps[-1].command, steps[-1].output + line + "\n")
        found.append(Transcript(text.count("\n", 0, block.start()) + 1, tuple(steps)))
    return found


# --- the situations the README describes in words ---------------------------------------------------


def schedule_in_december_2029(nl: Newsletter, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README states above ``schedule --next``.

    "In a newsletter folder with NEWSLETTER_TIMEZONE=Europe/Oslo in its .env, issue 2030-01 ready,
    and 2030-02 a draft with send_at: 2030-02-03T08:00:00+01:00, on 15 December 2029". The clock
    is the one thing a file cannot set: ``upcoming`` takes "now" as a parameter (None: the clock),
    and the command is given one at noon that day. No scheduler has run (no database), so there is
    no missed run to list.
    """
    nl.write(".env", "NEWSLETTER_TIMEZONE=Europe/Oslo\n")
    nl.issue("2030-01")
    nl.issue(
        "2030-02",
        meta='---\nsubject: "Burnout"\nstatus: draft\nsend_at: 2030-02-03T08:00:00+01:00\n---\n',
    )
    now = datetime(2029, 12, 15, 12, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    monkeypatch.setattr("newsletter.cli.schedule.upcoming", functools.partial(policy.upcoming, now=now))


SETUPS: dict[str, Callable[[Newsletter, pytest.MonkeyPatch], None]] = {
    "newsletter schedule --next": schedule_in_december_2029,
}


# --- the tests ------------------------------------------------------------------------------------------


def test_the_readme_has_the_transcripts_these_tests_run() -> None:
    # So that the test below cannot pass by finding nothing, nor a set-up outlive its transcript.
    names = [t.name for t in transcripts()]
    assert {"newsletter check 2021-07", "newsletter archive", "newsletter schedule --next"} <= set(names)
    assert set(SETUPS) <= set(names)
    assert all(t.steps and all(step.output for step in t.steps) for t in transcripts())


@pytest.mark.parametrize("transcript", transcripts(), ids=lambda t: f"README.md:{t.line} {t.name}")
def test_the_readme_transcript_is_what_the_command_prints(
    transcript: Transcript, samples: Newsletter, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transcript.name in SETUPS:
        SETUPS[transcript.name](samples, monkeypatch)
    monkeypatch.chdir(samples.root)
    for step in transcript.steps:
        program, *args = shlex.split(step.command)
        assert program == "newsletter", step.command
        result = CliRunner().invoke(app, args, prog_name="newsletter", env={"COLUMNS": "80"}, catch_exceptions=False)
        assert result.output == step.output, f"README.md:{transcript.line}: `{step.command}` printed\n{result.output}"
