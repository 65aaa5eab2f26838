"""A fake SendGrid v3 API on 127.0.0.1 for the real ``sendgrid`` client to talk to.

It checks the API key, validates each Mail Send request the way SendGrid's
documentation says it does (and rejects what SendGrid would reject), records
what every reader would receive with substitutions and unsubscribe-group tags
applied (and the one-click headers SendGrid adds), serves paged suppression
lists, and injects faults on demand: 429 with rate-limit headers, 500, a slow
answer after accepting, a connection dropped before or after accepting, an
answer held back after accepting until the test lets it go ("hold": the
sender is then killed with the request in the air).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

MAX_REQUEST_BYTES = 30 * 1024 * 1024


@dataclass
class Received:
    """One message as a reader would get it."""

    to: str
    name: str | None
    subject: str
    text: str
    html: str
    headers: dict[str, str]
    categories: list[str]
    custom_args: dict[str, str]
    asm_group_id: int | None
    tracking: dict[str, Any]
    message_id: str


@dataclass
class FakeSendGrid:
    api_key: str = "SG.fake-key-for-tests.0123456789"
    received: list[Received] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # accepted bodies
    rejected: list[tuple[int, list[str]]] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)  # consumed one per mail/send request
    suppressions: dict[str, list[str]] = field(default_factory=dict)  # list name → emails
    group_suppressions: dict[int, list[str]] = field(default_factory=dict)
    forbid_suppressions: bool = False  # a key restricted to Mail Send: the lists answer 403
    suppressions_body: bytes | None = None  # answer the lists with these bytes instead (a broken proxy)
    slow_seconds: float = 3.0
    record: bool = True  # keep every message; off for benchmarks, which only count
    latency: float = 0.0  # seconds before each mail/send answer: the network and SendGrid's own work
    accepted: int = 0  # personalizations accepted
    requests_accepted: int = 0
    delivered: Counter[str] = field(default_factory=Counter)  # address (lower case) → messages accepted, always kept
    holding: threading.Event = field(default_factory=threading.Event)  # a "hold" request is accepted, no answer yet
    let_go: threading.Event = field(default_factory=threading.Event)  # answer the held request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                fake._post(self)

            def do_GET(self) -> None:
                fake._get(self)

            def do_DELETE(self) -> None:
                fake._delete(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeSendGrid:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.let_go.set()
        self.server.shutdown()
        self.server.server_close()

    # -- helpers ----------------------------------------------------------------

    def settings(self, **extra: str) -> dict[str, str]:
        """The environment of a real send through this fake (``extra`` added or overriding)."""
        return {
            "SENDGRID_API_KEY": self.api_key,
            "SENDGRID_API_HOST": self.url,
            "SENDGRID_ASM_GROUP_ID": "4242",
            "NEWSLETTER_FROM": "PPRNet Digest <digest@pprnet.example.org>",
            "NEWSLETTER_POSTAL_ADDRESS": "1 Research Way, Ottawa",
            "NEWSLETTER_SECRET": "s3cret-for-tests-0123456789-abcdefghijklmnop",
            "COLUMNS": "200",
            **extra,
        }

    def by_reader(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for message in self.received:
            out.setdefault(message.to.lower(), []).append(message)
        return out

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._reply(
                handler,
                401,
                {
                    "errors": [
                        {"message": "The provided authorization grant is invalid, expired, or revoked", "field": None}
                    ]
                },
            )
            return False
        return True

    # -- DELETE: a group suppression lifted (a reader who signed up again) -------------

    def _delete(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorized(handler):
            return
        parts = handler.path.split("?")[0].strip("/").split("/")
        if parts[:3] == ["v3", "asm", "groups"] and len(parts) == 6 and parts[4] == "suppressions":
            emails = self.group_suppressions.get(int(parts[3]), [])
            if parts[5] in emails:
                emails.remove(parts[5])
            self._reply(handler, 204)
        else:
            self._reply(handler, 404, {"errors": [{"message": "not found"}]})

    # -- GET: suppression lists ----------------------------------------------------

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorized(handler):
            return
        url = urlparse(handler.path)
        query = parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        if self.forbid_suppressions:
            self._reply(handler, 403, {"errors": [{"field": None, "message": "access forbidden"}]})
            return
        if self.suppressions_body is not None:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", str(len(self.suppressions_body)))
            handler.end_headers()
            handler.wfile.write(self.suppressions_body)
            return
        if parts[:2] == ["v3", "suppression"] and len(parts) == 3:
            emails = self.suppressions.get(parts[2], [])
            limit = int(query.get("limit", ["500"])[0])
            offset = int(query.get("offset", ["0"])[0])
            if limit > 500:
                self._reply(handler, 400, {"errors": [{"message": "limit must be at most 500"}]})
                return
            page = [{"email": e, "created": 1600000000, "reason": parts[2]} for e in emails[offset : offset + limit]]
            self._reply(handler, 200, page)
        elif parts[:3] == ["v3", "asm", "groups"] and len(parts) == 5 and parts[4] == "suppressions":
            self._reply(handler, 200, self.group_suppressions.get(int(parts[3]), []))
        else:
            self._reply(handler, 404, {"errors": [{"message": "not found"}]})

    # -- POST /v3/mail/send ----------------------------------------------------------

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        if urlparse(handler.path).path != "/v3/mail/send":
            self._reply(handler, 404, {"errors": [{"message": "not found"}]})
            return
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
        if fault == "429":
            self._reply(
                handler,
                429,
                {"errors": [{"message": "too many requests"}]},
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + 1),
                },
            )
            return
        if fault == "429-bare":  # /mail/send may send no rate-limit headers at all
            self._reply(handler, 429, {"errors": [{"message": "too many requests"}]})
            return
        if fault == "500":
            self._reply(handler, 500, {"errors": [{"message": "internal error"}]})
            return
        if fault == "400":
            self._reply(
                handler,
                400,
                {
                    "errors": [
                        {
                            "message": "The from email does not contain a valid address.",
                            "field": "from.email",
                            "help": None,
                        }
                    ]
                },
            )
            return
        if fault == "drop-before":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if not self._authorized(handler):
            return
        errors = self._validate(raw)
        if errors:
            with self.lock:
                self.rejected.append((400, errors))
            self._reply(handler, 400, {"errors": [{"message": m, "field": None, "help": None} for m in errors]})
            return
        body = json.loads(raw)
        message_id = f"fake-{len(self.requests)}-{time.monotonic_ns()}"
        self._accept(body, message_id)
        if self.latency:
            time.sleep(self.latency)
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if fault == "hold":
            self.holding.set()
            self.let_go.wait()
        if fault == "drop-after":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        self._reply(handler, 202, None, {"X-Message-Id": message_id})

    def _validate(self, raw: bytes) -> list[str]:
        if len(raw) > MAX_REQUEST_BYTES:
            return ["The request body is too large (30 MB at most)."]
        try:
            body = json.loads(raw)
        except ValueError:
            return ["Bad Request: body is not JSON"]
        errors: list[str] = []
        persons = body.get("personalizations") or []
        if not persons:
            errors.append("You must have at least one personalization.")
        if len(persons) > 1000:
            errors.append(
                f"The personalization block is limited to 1000 personalizations per API request. You have provided {len(persons)} personalizations."
            )
        seen: set[str] = set()
        total = 0
        for p in persons:
            if not p.get("to"):
                errors.append(
                    "The to parameter is required for all personalization objects, and must have at least one email object with a valid email address."
                )
            for kind in ("to", "cc", "bcc"):
                for person in p.get(kind, []):
                    total += 1
                    email = str(person.get("email", ""))
                    if "@" not in email:
                        errors.append(f"Does not contain a valid address: {email!r}")
                    if email.lower() in seen:
                        errors.append(
                            "Each unique email address in the personalizations array should only be included once. You have included email address more than once."
                        )
                    seen.add(email.lower())
            if len(json.dumps(p.get("substitutions", {}), ensure_ascii=False).encode()) > 10_000:
                errors.append(
                    "The total size of your substitutions may not exceed 10,000 bytes per personalization object."
                )
        if total > 1000:
            errors.append("There is a limit of 1000 total recipients (to + cc + bcc) per request.")
        if not body.get("from", {}).get("email"):
            errors.append(
                "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter."
            )
        if not body.get("subject") and not all(p.get("subject") for p in persons):
            errors.append(
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined."
            )
        content = body.get("content") or []
        if not content or any(not c.get("value") for c in content):
            errors.append("The content value must be a string at least one character in length.")
        types = [c.get("type") for c in content]
        if "text/plain" in types and types[0] != "text/plain":
            errors.append("If present, text/plain content must be first, followed by any other content.")
        categories = body.get("categories", [])
        if len(categories) > 10:
            errors.append("The categories exceed the maximum of 10 allowed.")
        if any(len(c) > 255 for c in categories):
            errors.append("A category cannot have more than 255 characters.")
        if len(json.dumps(body.get("custom_args", {}), ensure_ascii=False).encode()) > 10_000:
            errors.append("The total size of your custom arguments may not exceed 10,000 bytes.")
        if "asm" in body and not isinstance(body["asm"].get("group_id"), int):
            errors.append("The asm group_id must be an integer.")
        return errors

    def _accept(self, body: dict[str, Any], message_id: str) -> None:
        with self.lock:
            self.accepted += len(body["personalizations"])
            self.requests_accepted += 1
            self.delivered.update(p["to"][0]["email"].lower() for p in body["personalizations"])
        if not self.record:
            return
        content = {c["type"]: c["value"] for c in body["content"]}
        group = body.get("asm", {}).get("group_id")
        with self.lock:
            self.requests.append(body)
            for p in body["personalizations"]:
                to = p["to"][0]
                token = to["email"].lower().replace("@", ".at.")
                tags = {
                    "<%asm_group_unsubscribe_raw_url%>": f"https://sendgrid.test/unsubscribe/{group}/{token}",
                    "<%asm_preferences_raw_url%>": f"https://sendgrid.test/preferences/{token}",
                    **p.get("substitutions", {}),
                }

                def apply(text: str, tags: dict[str, str] = tags) -> str:
                    for tag, value in tags.items():
                        text = text.replace(tag, value)
                    return text

                headers = {**body.get("headers", {})}
                if group is not None:
                    headers |= {
                        "List-Unsubscribe": f"<https://sendgrid.test/unsubscribe/{group}/{token}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    }
                self.received.append(
                    Received(
                        to=to["email"],
                        name=to.get("name"),
                        subject=apply(p.get("subject") or body["subject"]),
                        text=apply(content.get("text/plain", "")),
                        html=apply(content.get("text/html", "")),
                        headers=headers,
                        categories=list(body.get("categories", [])),
                        custom_args={**body.get("custom_args", {}), **p.get("custom_args", {})},
                        asm_group_id=group,
                        tracking=body.get("tracking_settings", {}),
                        message_id=message_id,
                    )
                )


def main() -> None:
    """Run the fake on its own (for bench/send.py): ``python tests/fake_sendgrid.py PORT [LATENCY_S]``."""
    import sys

    fake = FakeSendGrid(record=False, latency=float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    fake.server.server_close()
    fake.server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), fake.server.RequestHandlerClass)
    fake.server.daemon_threads = True
    print("ready", flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
