"""SpamAssassin, run for real, scores every variant of every sample issue 0.0.

Debian's ``spamassassin`` (installed by .ci/run) with its shipped rules and
local tests only (``-L``: no DNS blocklists, no network), on the ``.eml``
files a sample send writes to the outbox, exactly as a reader's server
would get them. It runs with a home of its own, so no learned (Bayes)
state, the developer's or an earlier run's, can change a score.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
from pathlib import Path

from newsletter.content.workspace import Workspace
from newsletter.settings import load_settings

from conftest import Newsletter

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
SENT_ISSUES = ("2021-05", "2021-06", "2021-07", "2021-08")  # every sample issue that passes `check`
_STATUS = re.compile(
    rb"^X-Spam-Status: (\w+), score=(-?[\d.]+) required=[\d.]+ tests=(.*?)(?: autolearn=|$)", re.M | re.S
)


def variant_of(message: email.message.EmailMessage, slugs: list[str]) -> tuple[str, ...]:
    """The summaries a message carries: the slugs of its summary titles (``<h2 id=slug>``)."""
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    return tuple(s for s in slugs if f'id="{s}"' in html)


def test_every_sample_variant_scores_zero(samples: Newsletter, tmp_path: Path) -> None:
    assert Path(SPAMASSASSIN).exists(), "SpamAssassin not installed (apt-get install spamassassin; .ci/run does)"
    ws = Workspace(load_settings(samples.root))
    files: list[Path] = []
    covered: dict[str, set[tuple[str, ...]]] = {}
    for issue_id in SENT_ISSUES:
        result = samples.cli("send", issue_id, "--yes")
        assert result.exit_code == 0, result.stderr
        issue = ws.load(issue_id)
        slugs = [s.slug for s in issue.summaries]
        for path in sorted((samples.root / "outbox" / issue_id).glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            covered.setdefault(issue_id, set()).add(variant_of(message, slugs))
            files.append(path)
        # The sample readers' topics reach every variant: all, and each summary alone.
        assert covered[issue_id] == {tuple(s for s in slugs if s in sel) for sel in issue.selections()}, issue_id

    home = tmp_path / "sa-home"
    home.mkdir()
    run = subprocess.run(
        [SPAMASSASSIN, "-L", "-t", "-x", *map(str, files)],
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    statuses = _STATUS.findall(run.stdout)
    assert len(statuses) == len(files) > 6
    for path, (verdict, score, tests) in zip(files, statuses, strict=True):
        rules = " ".join(tests.decode().split())
        assert verdict == b"No" and float(score) == 0.0, f"{path.name}: {score.decode()} ({rules})"
