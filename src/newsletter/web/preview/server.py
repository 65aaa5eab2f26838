"""The preview over HTTP: ``http.server`` on 127.0.0.1, in front of ``Preview.respond``.

The standard library's threading server is enough for one author and a browser: each page
and its two frames are requests at once, and pages poll ``/__version`` twice a second, so
requests are not logged (a line each would bury the watcher's "changed: ..." lines).
Responses are never cached: a reload must read the page again.

Two things ``HTTPServer`` does by default are undone. ``server_bind`` looks up the host's
fully qualified name, which stalls for seconds where DNS is slow; 127.0.0.1 needs no name.
And a browser that goes away mid-response (a reload, a closed tab) is no error to report.
"""

from __future__ import annotations

import errno
import socketserver
import sys
import threading
import traceback
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from newsletter.errors import NewsletterError
from newsletter.web.preview.app import TEXT, Preview, Response

HOST = "127.0.0.1"
DEFAULT_PORT = 8025


class Handler(BaseHTTPRequestHandler):
    """GET only: whatever ``Preview.respond`` says, and a page (not a dropped connection) if it fails."""

    server: PreviewServer

    def do_GET(self) -> None:
        preview = self.server.preview
        try:
            if not local_host(self.headers.get("Host", "")):
                # DNS rebinding: a web page the author visits could point its
                # own name at 127.0.0.1 and read drafts. Only local names pass.
                response = Response(403, "the preview answers to localhost and 127.0.0.1 only\n", TEXT)
            else:
                response = preview.respond(self.path)
        except Exception as err:
            traceback.print_exc()
            response = internal_error(preview, err)
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


LOCAL_NAMES = {"127.0.0.1", "localhost", "::1"}


def local_host(host: str) -> bool:
    """Whether a request's Host header names this machine (with any port)."""
    name = host.strip().lower()
    name = name[1:].split("]", 1)[0] if name.startswith("[") else name.rsplit(":", 1)[0] if ":" in name else name
    return name in LOCAL_NAMES


def internal_error(preview: Preview, err: Exception) -> Response:
    """A bug of ours as a page that still reloads; as plain text if even that page fails."""
    message = f"internal error: {err!r}"
    try:
        return Response(500, preview.pages.error("preview failed", message, preview.version))
    except Exception:
        traceback.print_exc()
        return Response(500, message, TEXT)


class PreviewServer(ThreadingHTTPServer):
    """The preview on ``host:port`` (port 0: any free one); raises NewsletterError if the port is taken."""

    daemon_threads = True

    def __init__(self, preview: Preview, port: int = DEFAULT_PORT, host: str = HOST) -> None:
        self.preview = preview
        try:
            super().__init__((host, port), Handler)
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
