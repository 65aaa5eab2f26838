"""``newsletter preview``: an issue's variants in a local web page that follows the author's edits.

    PreviewServer (http.server on 127.0.0.1) ──▶ Preview.respond(target) ──▶ Snapshot ──▶ Renderer
    watch thread (watchfiles: issues/, templates/) ──▶ Preview.changed(): version + 1

Routes:
    /                       the variants with their sizes, and ``check``'s problems
    /?topics=a,b            the variant a reader with those topics gets (a redirect), or why none
    /variant/<key>          the email at phone (375 px) and desktop (800 px) width, and its text part
    /raw/<key>.html|.txt    one variant filled for a sample reader: what the frames load
    /__version              changes whenever a watched file does

Live reload: a change bumps the version; the preview pages poll ``/__version`` and reload when
it differs from the version they were built at, and that request reads the files afresh. The
email HTML is served exactly as rendered: the script lives only in the pages around it. A
broken file shows its problems (path:line: message) in the page, and the server keeps running.
"""

from __future__ import annotations

import errno
import html
import json
import re
import socketserver
import sys
import threading
import traceback
import uuid
import webbrowser
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import watchfiles

from newsletter.audience.personalise import selection_for
from newsletter.content import urls
from newsletter.content.model import Issue, Selection
from newsletter.content.taxonomy import ALL, Taxonomy
from newsletter.content.workspace import Workspace
from newsletter.errors import ContentError, NewsletterError, Problem, errors_in
from newsletter.render.renderer import Renderer, fill_sample
from newsletter.render.sizes import GMAIL_CLIP_BYTES, check_sizes, size_of, verdict
from newsletter.render.variant import Variant
from newsletter.settings import Settings
from newsletter.support.words import plural
from newsletter.web.archive import DEFAULT_FOLDER as SITE_FOLDER
from newsletter.web.archive import INDEX

HOST = "127.0.0.1"
DEFAULT_PORT = 8025
PHONE_WIDTH = 375
DESKTOP_WIDTH = 800
POLL_MS = 500
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"


class _NotFound(NewsletterError):
    """No such page (a variant the issue does not have, or a mistyped address)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    content_type: str = HTML
    location: str | None = None


class _RenderOnce(Renderer):
    """A Renderer that renders each selection once. A snapshot has its own, so an edit is seen."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._done: dict[frozenset[str], Variant] = {}
        # The page and its two frames ask at once; render each variant once, one at a time.
        self._lock = threading.Lock()

    def render(self, issue: Issue, slugs: Iterable[str] | None = None) -> Variant:
        chosen = frozenset(s.slug for s in issue.summaries) if slugs is None else frozenset(slugs)
        with self._lock:
            if chosen not in self._done:
                self._done[chosen] = super().render(issue, chosen)
            return self._done[chosen]


@dataclass
class Snapshot:
    """The newsletter folder as read at one version: ``check``'s problems, and the issue if it loads."""

    version: str
    issue_id: str
    root: Path
    taxonomy: Taxonomy
    problems: list[Problem]
    issue: Issue | None  # None while it has errors
    renderer: Renderer

    @classmethod
    def read(cls, settings: Settings, issue_id: str, version: str) -> Snapshot:
        """Read everything again (a fresh Workspace: topics.yaml may have changed too)."""
        ws = Workspace(settings)
        checked = ws.check(issue_id)
        return cls(version, issue_id, ws.root, ws.taxonomy, checked.problems, checked.issue, _RenderOnce(settings))

    def loaded(self) -> Issue:
        if self.issue is None:
            raise ContentError(
                f"issue {self.issue_id} has errors: fix them and this page reloads", errors_in(self.problems)
            )
        return self.issue

    def variants(self) -> dict[str, Selection]:
        """Every variant key (``all``, ``01+02``...) and its selection, full issue first."""
        issue = self.loaded()
        return {issue.key_of(sel): sel for sel in issue.selections()}

    def variant(self, key: str) -> Variant:
        keys = self.variants()
        if key not in keys:
            raise _NotFound(f"issue {self.issue_id} has no variant {key!r} (it has {', '.join(keys)})")
        return self.renderer.render(self.loaded(), keys[key])

    def filled(self, key: str) -> tuple[str, str]:
        """``(html, text)`` of a variant for a sample reader, with links as long as real ones."""
        return fill_sample(self.variant(key), self.renderer.settings.base_url)

    def for_reader(self, labels: str) -> tuple[str | None, str]:
        """The variant key a reader with these topics gets (None: nothing), and a sentence saying so.

        ``labels`` are topic names, slugs or aliases separated by commas, or ``all``.
        """
        issue = self.loaded()
        names = [label.strip() for label in re.split(r"[,;]", labels) if label.strip()]
        if not names:
            return None, "No topics given: write topic names, slugs or aliases separated by commas, or all."
        if any(name.casefold() == ALL for name in names):
            return "all", "What a reader with all topics gets: the full issue."
        unknown = [self.taxonomy.unknown_message(name) for name in names if self.taxonomy.get(name) is None]
        if unknown:
            return None, "; ".join(unknown)
        topics = [t for t in (self.taxonomy.get(name) for name in names) if t is not None]
        said = ", ".join(dict.fromkeys(t.name for t in topics))
        selection = selection_for(issue, frozenset(t.slug for t in topics))
        if not selection:
            if self.renderer.settings.send_unmatched:
                return "all", (
                    f"No summary matches {said}; NEWSLETTER_SEND_UNMATCHED is on, so this reader gets the full issue."
                )
            return None, (
                f"A reader with topics {said} gets nothing this month: no summary has any of those "
                "topics, so send skips them (NEWSLETTER_SEND_UNMATCHED=true would send the full issue)."
            )
        key = next(k for k, sel in self.variants().items() if sel == selection)
        return key, f"What a reader with topics {said} gets."


class Preview:
    """One issue as the preview server shows it, read from disk again after every change."""

    def __init__(self, settings: Settings, issue_id: str, log: Callable[[str], None] = lambda line: None) -> None:
        self.settings = settings
        self.issue_id = issue_id
        self.log = log
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
            raise _NotFound(f"no page {path}")
        except _NotFound as err:
            return Response(404, _page("Not found", f'<p>{_e(err)}. <a href="/">All variants</a></p>', version))
        except NewsletterError as err:
            problems = err.problems if isinstance(err, ContentError) else []
            body = f'<p class="error">{_e(err)}</p>{_problem_list(problems, self.settings.root)}'
            return Response(500, _page(f"{self.issue_id}: cannot show this", body, version))

    def _site_file(self, relative: str) -> Response:
        """A page of the archive built by `newsletter archive` into site/, as it will be published."""
        site = (self.settings.root / SITE_FOLDER).resolve()
        target = (site / relative).resolve()
        if target.is_dir():
            target = target / INDEX
        if not target.is_relative_to(site) or not target.is_file():
            raise _NotFound(f"no page {relative} in {SITE_FOLDER}/ (run `newsletter archive`)")
        kind = {".html": HTML, ".xml": ATOM}.get(target.suffix, TEXT)
        return Response(200, target.read_text(encoding="utf-8"), kind)

    def _archive_link(self, issue: Issue) -> str:
        public, path = urls.issue_url(self.settings, issue.id), urls.issue_path(issue.id)
        if issue.status == "ready":
            note = "written by `newsletter archive`"
            if (self.settings.root / SITE_FOLDER / path / INDEX).is_file():
                note += f' · <a href="/site/{path}">local copy in {SITE_FOLDER}/</a>'
        else:
            note = "a draft is left out of the archive until its status is ready"
        return (
            f'<p class="archive">Web page of this issue (the email\'s "view in browser"): '
            f'<a href="{_e(public)}">{_e(public)}</a> — {note}</p>'
        )

    def _index(self, snap: Snapshot, topics: str) -> Response:
        notice = ""
        if topics.strip():
            key, said = snap.for_reader(topics)
            if key is not None:
                return Response(303, "", TEXT, location=f"/variant/{quote(key)}?topics={quote(topics)}")
            notice = f'<p class="notice">{_e(said)}</p>'
        issue = snap.issue
        title = f"{snap.issue_id}: {issue.subject}" if issue else f"issue {snap.issue_id}"
        problems = list(snap.problems)
        if issue is not None:
            problems += check_sizes(issue, snap.renderer)  # renders the full issue, cached for the table
            variants = self._archive_link(issue) + _summaries_table(issue) + _variants_table(snap)
        else:
            variants = "<p>Fix the errors above: this page reloads when a file is saved.</p>"
        form = (
            f'<form action="/" method="get"><label>What does a reader get? Their topics: '
            f'<input name="topics" value="{_e(topics)}" placeholder="e.g. empathy, training — or all" size="32">'
            f"</label> <button>Show</button></form>"
        )
        errors = len(errors_in(problems))
        verdict = (
            f"newsletter check {snap.issue_id}: {plural(errors, 'error')}, {plural(len(problems) - errors, 'warning')}"
        )
        check = f"<h2>Check</h2><p>{_e(verdict)}</p>{_problem_list(problems, snap.root)}"
        return Response(200, _page(title, notice + form + check + variants, snap.version))

    def _variant(self, snap: Snapshot, key: str, topics: str) -> Response:
        notice = ""
        if topics.strip():
            # After an edit the same reader may get another variant: follow them there.
            wanted, said = snap.for_reader(topics)
            if wanted != key:
                where = f"/variant/{quote(wanted)}" if wanted else "/"
                return Response(303, "", TEXT, location=f"{where}?topics={quote(topics)}")
            notice = f'<p class="notice">{_e(said)}</p>'
        variant = snap.variant(key)
        page, text = snap.filled(key)
        issue = snap.loaded()
        titles = {s.slug: s.title for s in issue.summaries}
        others = " · ".join(
            f"<b>{_e(k)}</b>" if k == key else f'<a href="/variant/{quote(k)}">{_e(k)}</a>' for k in snap.variants()
        )
        shown = "the full issue" if variant.is_full else "; ".join(titles[s] for s in variant.slugs)
        raw = f"/raw/{quote(key)}"
        frames = "".join(
            f"<figure><figcaption>{label}, {width} px</figcaption>"
            f'<iframe class="email" src="{raw}.html" width="{width}" height="900" title="{label} view" '
            'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox" onload="nlFit(this)">'
            "</iframe></figure>"
            for label, width in (("Phone", PHONE_WIDTH), ("Desktop", DESKTOP_WIDTH))
        )
        body = (
            f'<p><a href="/">← all variants</a> · variants: {others}</p>{notice}'
            f"<p>Summaries: {_e(shown)}<br>Subject: <b>{_e(variant.subject)}</b><br>"
            f"HTML {_size_html(size_of(page))} · text {size_of(text) / 1024:.1f} KB · "
            f'<a href="{raw}.html">HTML</a> · <a href="{raw}.txt">text</a></p>'
            f'<div class="frames">{frames}</div><h2>Plain-text part</h2><pre class="text">{_e(text)}</pre>'
        )
        return Response(200, _page(f"{snap.issue_id} · variant {key}", body, snap.version))


# --- the pages ---------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _size_html(size: int) -> str:
    judged = verdict(size)
    note = {"ok": "", "close": ": close to the limit", "clipped": ": Gmail clips it"}[judged]
    return (
        f'<span class="{judged}">{size / 1024:.1f} KB ({size / GMAIL_CLIP_BYTES:.0%} of Gmail\'s '
        f"{GMAIL_CLIP_BYTES // 1024} KB{note})</span>"
    )


def _problem_list(problems: list[Problem], root: Path) -> str:
    if not problems:
        return ""
    items = "".join(f'<li class="{p.severity}">{_e(p.format(root))}</li>' for p in problems)
    return f'<ul class="problems">{items}</ul>'


def _summaries_table(issue: Issue) -> str:
    rows = "".join(
        f"<tr><td>{n:02d}</td><td>{_e(s.title)}</td><td>{_e(', '.join(t.name for t in s.topics))}</td></tr>"
        for n, s in enumerate(issue.summaries, 1)
    )
    return f"<h2>Summaries</h2><table><tr><th>#</th><th>title</th><th>topics</th></tr>{rows}</table>"


def _variants_table(snap: Snapshot) -> str:
    titles = {s.slug: s.title for s in snap.loaded().summaries}
    rows = []
    for key, selection in snap.variants().items():
        page, text = snap.filled(key)
        shown = "full issue" if key == "all" else "; ".join(titles[s] for s in selection)
        rows.append(
            f'<tr><td><a href="/variant/{quote(key)}">{_e(key)}</a></td><td>{_e(shown)}</td>'
            f"<td>{_size_html(size_of(page))}</td><td>{size_of(text) / 1024:.1f} KB</td></tr>"
        )
    return (
        f"<h2>Variants</h2><p>Filled for a sample reader.</p><table><tr><th>variant</th><th>summaries</th>"
        f"<th>HTML</th><th>text</th></tr>{''.join(rows)}</table>"
    )


# Polls /__version and reloads on change, keeping the scroll position; frames grow to fit their email.
_SCRIPT = """
var nlBuilt = %s;
function nlFit(frame) {
  try { frame.style.height = frame.contentDocument.documentElement.scrollHeight + "px"; } catch (e) {}
}
(function poll() {
  setTimeout(function () {
    fetch("/__version", {cache: "no-store"}).then(function (r) { return r.text(); }).then(function (v) {
      if (v === nlBuilt) { poll(); return; }
      sessionStorage.setItem("nl-scroll", String(window.scrollY));
      location.reload();
    }).catch(poll);  /* server stopped or restarting: keep asking */
  }, %d);
})();
addEventListener("load", function () {
  var y = sessionStorage.getItem("nl-scroll");
  if (y !== null) { sessionStorage.removeItem("nl-scroll"); window.scrollTo(0, Number(y)); }
});
"""

_STYLE = """
body { font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 1.5rem; color: #1f2933; background: #f6f7f9; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; background: #fff; } td, th { text-align: left; padding: .35rem .7rem;
  border-bottom: 1px solid #d0d7de; vertical-align: top; }
.problems { font-family: Menlo, Consolas, monospace; font-size: 13px; padding-left: 1.2rem; }
.error, .clipped { color: #b91c1c; font-weight: 600; } .warning, .close { color: #9a3412; }
.notice { background: #fff7d6; border-left: 4px solid #d4a72c; padding: .5rem .8rem; max-width: 60rem; }
.frames { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 13px; color: #4b5563; margin-bottom: 4px; }
iframe.email { border: 1px solid #c4cdd5; background: #fff; display: block; }
pre.text { background: #fff; border: 1px solid #d0d7de; padding: 1rem; max-width: 80ch; white-space: pre-wrap;
           font-size: 13px; }
"""


def _page(title: str, body: str, version: str) -> str:
    script = _SCRIPT % (json.dumps(version), POLL_MS)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · preview</title>'
        f"<style>{_STYLE}</style><script>{script}</script></head>\n"
        f"<body><h1>{_e(title)}</h1>\n{body}\n</body></html>\n"
    )


# --- the server --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:
        try:
            response = self.server.preview.respond(self.path)
        except Exception as err:
            traceback.print_exc()
            response = Response(
                500,
                _page(
                    "preview failed",
                    f'<p class="error">internal error: {_e(repr(err))}</p>',
                    self.server.preview.version,
                ),
            )
        body = response.body.encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if response.location:
            self.send_header("Location", response.location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # pages poll twice a second: a line per request would bury the change messages


class PreviewServer(ThreadingHTTPServer):
    """The preview on ``host:port`` (port 0: any free one); raises NewsletterError if the port is taken."""

    daemon_threads = True

    def __init__(self, preview: Preview, port: int = DEFAULT_PORT, host: str = HOST) -> None:
        self.preview = preview
        try:
            super().__init__((host, port), _Handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise NewsletterError(
                    f"port {port} is already in use on {host}: stop what is using it, "
                    f"or choose another port with --port, e.g. --port {port + 1}"
                ) from err
            raise NewsletterError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which stalls where DNS is slow; 127.0.0.1 needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.server_name}:{self.server_port}/"

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser went away mid-response (a reload): nothing to report
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def running(preview: Preview, port: int = DEFAULT_PORT, host: str = HOST) -> Iterator[PreviewServer]:
    """A bound server with its file watcher running; calling ``serve_forever`` is the caller's part."""
    server = PreviewServer(preview, port, host)
    stop = threading.Event()
    watcher = threading.Thread(target=preview.watch, args=(stop,), name="preview-watch", daemon=True)
    watcher.start()
    try:
        yield server
    finally:
        stop.set()
        server.server_close()
        watcher.join(timeout=2)


def serve(
    preview: Preview, port: int = DEFAULT_PORT, *, open_browser: bool = True, echo: Callable[[str], None] = print
) -> None:
    """Serve ``preview`` until Ctrl-C, opening it in the browser unless told not to."""
    try:
        with running(preview, port) as server:
            echo(
                f"previewing {preview.issue_id} at {server.url} (edits under issues/ and templates/ reload "
                "the page; Ctrl-C stops)"
            )
            if open_browser:
                # In a thread: some browsers (a text-mode one) keep webbrowser.open busy until they exit.
                threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
            server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the author stops it: not an error
    echo("stopped")
