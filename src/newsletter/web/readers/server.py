"""Running the readers' pages: settings checked, the app on uvicorn (in the foreground, or in a thread for tests).

uvicorn believes ``X-Forwarded-For`` and ``X-Forwarded-Proto`` only from
the addresses in ``NEWSLETTER_TRUSTED_PROXIES`` (its proxy-headers
middleware): behind a reverse proxy, that is the proxy; the client address
the rate limits count is then the one the proxy saw. Its access log is off
(query strings hold readers' tokens); ``guard.SecurityHeaders`` logs each
request by path.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

import uvicorn

from newsletter.errors import ConfigError, NewsletterError
from newsletter.settings import Settings, unset_for_sending, with_sample_defaults
from newsletter.web.readers.app import ReadersApp

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serving_settings(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings to serve with, and warnings: the outbox runs on samples, SendGrid needs the real ones.

    Never the sample secret on a public address: it is in the source, and
    with it anyone could make any reader's link and change their topics.
    """
    if not settings.secret.get_secret_value() and urlsplit(settings.base_url).hostname not in LOOPBACK:
        raise ConfigError(
            f"serving {settings.base_url} needs NEWSLETTER_SECRET (the one the emails' links were made with): "
            "without it anyone could make any reader's link"
        )
    if not settings.sendgrid_api_key.get_secret_value():
        settings, filled = with_sample_defaults(settings)
        warnings = [f"{', '.join(filled)} not set: using sample values (fine for the outbox)"] if filled else []
        return settings, warnings
    unset = unset_for_sending(settings)
    if unset:
        raise ConfigError(f"serving with SendGrid needs {', '.join(unset)}; set them in the environment or .env")
    return settings, []


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); NewsletterError if it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise NewsletterError(f"port {port} is already in use on {host}: choose another with --port") from err
        raise NewsletterError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    # Accepted connections inherit this: without it a response's headers and body
    # (two writes) meet Nagle and the client's delayed ACK, 40 ms a request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: ReadersApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app.starlette(),
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


def serve(settings: Settings, host: str, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    settings, warnings = serving_settings(settings)
    for warning in warnings:
        echo(f"warning: {warning}")
    sock = bind(host, port)
    app = ReadersApp(settings)
    # uvicorn shuts down gracefully on SIGTERM or Ctrl-C, then raises the signal again for the
    # handler it found: this one, so the command ends like the scheduler, with status 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        echo(f"serving the readers' pages and the archive for {settings.base_url} on http://{host}:{port}/")
        uvicorn.Server(_config(app, settings)).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it is stopped by hand: not an error
    finally:
        signal.signal(signal.SIGTERM, previous)
        app.close()
        sock.close()
    echo("stopped")


class Serving:
    """The server in a thread of this process (tests, bench): ``with Serving(settings, sock) as app: ...``."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings, _ = serving_settings(settings)
        self.sock = sock
        self.app = ReadersApp(self.settings)
        self.server = uvicorn.Server(_config(self.app, self.settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> ReadersApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise NewsletterError("the readers' server did not start")
        return self.app

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.app.close()
        self.sock.close()
