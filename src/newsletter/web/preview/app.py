"""The preview of one issue: its version, its file watcher, and the response to each address.

``Preview.respond(target)`` is the whole site, without sockets (``server.py`` adds them), so
tests call it directly. It reads the newsletter folder through a ``Snapshot``, taken again
once the version has moved, and turns our errors into pages: a broken file is something to
show the author, never a reason for the server to stop.

The version is ``<session>-<changes>``. The session part is new at every start, so a page
left open across a restart of the server reloads as well. It is read *before* a snapshot is
taken: an edit saved during the read bumps it again, and the next request reads once more.

The watcher names the files an edit touched, for the terminal, but only those that changed
in the end: an editor's (or sed's) temporary file that comes and goes within one batch is
still a change (the page reloads), just not one worth a line.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import watchfiles

from newsletter.errors import ContentError, NewsletterError
from newsletter.settings import Settings
from newsletter.web.archive import DEFAULT_FOLDER as SITE_FOLDER
from newsletter.web.archive import INDEX
from newsletter.web.preview.pages import Pages
from newsletter.web.preview.snapshot import NotFound, Snapshot

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"


@dataclass(frozen=True)
class Response:
    """What the server sends for one request (``location``: where a 303 sends the browser)."""

    status: int
    body: str
    content_type: str = HTML
    location: str | None = None


class Preview:
    """One issue as the preview server shows it, read from disk again after every change."""

    def __init__(self, settings: Settings, issue_id: str, log: Callable[[str], None] = lambda line: None) -> None:
        self.settings = settings
        self.issue_id = issue_id
        self.log = log
        self.pages = Pages(settings)
        # A restarted server starts a new session, so pages left open from the last one reload too.
        self._session = uuid.uuid4().hex[:8]
        self._changes = 0
        self._count_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    @property
    def version(self) -> str:
        return f"{self._session}-{self._changes}"

    @property
    def watched(self) -> list[Path]:
        return [self.settings.issues_dir, self.settings.templates_dir]

    def changed(self, paths: Iterable[Path] = ()) -> None:
        """Files changed: the next request reads them again, and open pages reload."""
        with self._count_lock:
            self._changes += 1
        root = self.settings.root.resolve()
        shown = sorted({str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths})
        if shown:
            self.log(f"changed: {', '.join(shown)}")

    def snapshot(self) -> Snapshot:
        with self._read_lock:
            version = self.version  # taken before reading: an edit during the read is seen next time
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = Snapshot.read(self.settings, self.issue_id, version)
            return self._snapshot

    def watch(self, stop: threading.Event) -> None:
        """Call ``changed`` for every change under ``issues/`` and ``templates/`` until ``stop`` is set."""
        folders = [p for p in self.watched if p.is_dir()]
        try:
            for changes in watchfiles.watch(*folders, stop_event=stop, debounce=400, raise_interrupt=False):
                # An editor's (or sed's) temporary file comes and goes within one batch: not worth naming.
                added = {path for change, path in changes if change == watchfiles.Change.added}
                deleted = {path for change, path in changes if change == watchfiles.Change.deleted}
                self.changed(Path(path) for path in {path for _, path in changes} - (added & deleted))
        except Exception as err:
            self.log(f"warning: live reload stopped: {err}")

    def respond(self, target: str) -> Response:
        """The response to ``GET target``; our errors become a page, never an exception."""
        url = urlsplit(target)
        path, query = unquote(url.path), parse_qs(url.query)
        version = self.version
        if path == "/__version":
            return Response(200, version, TEXT)
        if path == "/favicon.ico":
            return Response(204, "", TEXT)
        try:
            if path.startswith("/site/"):  # the built archive: files on disk, no snapshot needed
                return self._site_file(path.removeprefix("/site/"))
            snap = self.snapshot()
            version = snap.version
            topics = query.get("topics", [""])[0]
            if path == "/":
                return self._index(snap, topics)
            if match := re.fullmatch(r"/variant/([\w+]+)", path):
                return self._variant(snap, match.group(1), topics)
            if match := re.fullmatch(r"/raw/([\w+]+)\.(html|txt)", path):
                page, text = snap.filled(match.group(1))
                return Response(200, page) if match.group(2) == "html" else Response(200, text, TEXT)
            raise NotFound(f"no page {path}")
        except NotFound as err:
            return Response(404, self.pages.not_found(str(err), version))
        except NewsletterError as err:
            problems = err.problems if isinstance(err, ContentError) else []
            title = f"{self.issue_id}: cannot show this"
            return Response(500, self.pages.error(title, str(err), version, problems, self.settings.root))

    def _site_file(self, relative: str) -> Response:
        """A page of the archive built by `newsletter archive` into site/, as it will be published."""
        missing = NotFound(f"no page {relative!r} in {SITE_FOLDER}/ (run `newsletter archive`)")
        site = (self.settings.root / SITE_FOLDER).resolve()
        try:
            target = (site / relative).resolve()  # a NUL byte (/site/%00) raises ValueError
            if target.is_dir():
                target = target / INDEX
            if not target.is_relative_to(site) or not target.is_file():
                raise missing
            kind = {".html": HTML, ".xml": ATOM}.get(target.suffix, TEXT)
            return Response(200, target.read_text(encoding="utf-8"), kind)
        except (ValueError, OSError):  # UnicodeDecodeError is a ValueError
            raise missing from None

    def _index(self, snap: Snapshot, topics: str) -> Response:
        notice = None
        if topics.strip():
            key, said = snap.for_reader(topics)
            if key is not None:
                return Response(303, "", TEXT, location=f"/variant/{quote(key)}?topics={quote(topics)}")
            notice = said
        return Response(200, self.pages.index(snap, topics, notice))

    def _variant(self, snap: Snapshot, key: str, topics: str) -> Response:
        notice = None
        if topics.strip():
            # After an edit the same reader may get another variant: follow them there.
            wanted, said = snap.for_reader(topics)
            if wanted != key:
                where = f"/variant/{quote(wanted)}" if wanted else "/"
                return Response(303, "", TEXT, location=f"{where}?topics={quote(topics)}")
            notice = said
        return Response(200, self.pages.variant(snap, key, notice))
