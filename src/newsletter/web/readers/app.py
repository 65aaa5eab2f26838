"""The readers' pages: sign-up with double opt-in, preferences, "lost your link?", unsubscribe, events, the archive.

Routes (under the path of ``NEWSLETTER_BASE_URL``):

    /subscribe/          GET form (``?topic=slug`` ticks one); POST → "check your inbox", confirmation emailed
    /confirm/?t=…        GET a button; POST confirms (the sign-up's topics and name apply now)
    /preferences/?t=…    GET name and topics; POST saves them for the next send
    /manage/             GET form; POST → a known reader's link emailed; the same answer for any address
    /unsubscribe/?t=…    GET a button; POST unsubscribes (or undoes); RFC 8058 one-click POST at once
    /webhooks/sendgrid   SendGrid's signed Event Webhook (``webhook``)
    /healthz             the database answers
    /…                   the built archive (``site/``)

No GET changes anything (mail scanners open links). No page says whether an
address is a reader: sign-up and "lost your link?" answer the same, at once,
and their emails go out after the answer (a background task), so not even
the time taken tells. Every form carries a signed form token and is refused
from another site's page; form posts are limited per client address, and
emails to one address to one per 10 minutes (``state.may_mail``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from newsletter.audience.choices import Reader, Topics
from newsletter.audience.subscribers import MAX_NAME, Status, normalize_email
from newsletter.content.workspace import Workspace
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.readers import reader_links, reader_store
from newsletter.settings import Settings
from newsletter.web.readers.files import ArchiveFiles
from newsletter.web.readers.guard import RateLimiter, SecurityHeaders, client_of, from_elsewhere, origin_of
from newsletter.web.readers.mail import Mailer
from newsletter.web.readers.pages import Pages
from newsletter.web.readers.state import ReaderState
from newsletter.web.readers.tokens import Signer, same
from newsletter.web.readers.webhook import SendGridEvents

log = logging.getLogger("newsletter.serve")
MAX_FIELD = 1000  # characters of any one form field we look at
ONE_CLICK = ("List-Unsubscribe", "One-Click")
REFRESH_EVERY = 1.0  # seconds between looks at the subscriber files


def clean_name(value: str) -> str:
    """A name as typed, made safe to keep: control characters out, spaces squeezed, at most MAX_NAME."""
    printable = "".join(ch if ch.isprintable() else " " for ch in value[:MAX_FIELD])
    return " ".join(printable.split())[:MAX_NAME].rstrip()


class ReadersApp:
    """Everything the routes share; ``starlette()`` is the ASGI app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ws = Workspace(settings)
        self.ledger = Ledger(settings.ledger_url)
        self.store = reader_store(settings, self.ledger.engine)
        self.links = reader_links(settings)
        self.state = ReaderState(self.ledger.engine)
        self.signer = Signer(settings.secret.get_secret_value())
        self.pages = Pages(self.ws)
        self.mailer = Mailer(settings, self.ledger)
        self.events = SendGridEvents(settings, self.store, self.state)
        self.forms = RateLimiter(settings.form_rate_limit, 60.0)
        self.origin = origin_of(settings.base_url)
        self.prefix = settings.base_url[len(self.origin) :].rstrip("/")
        self._refreshed = -REFRESH_EVERY
        self.refresh()

    def url(self, path: str) -> str:
        return f"{self.settings.base_url}/{path}"

    def refresh(self) -> None:
        """The subscriber files synced in: readers the author adds are known within a second.

        One look a second at most: under load a page would otherwise stat the files for each request.
        """
        now = time.monotonic()
        if now - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = now
        self.store.refresh(self.settings.subscribers_dir, self.ws.taxonomy)

    def close(self) -> None:
        self.store.close()
        self.ledger.close()

    def starlette(self) -> Starlette:
        routes: list[BaseRoute] = [
            Route("/subscribe/", self.subscribe, methods=["GET", "POST"]),
            Route("/confirm/", self.confirm, methods=["GET", "POST"]),
            Route("/preferences/", self.preferences, methods=["GET", "POST"]),
            Route("/manage/", self.manage, methods=["GET", "POST"]),
            Route("/unsubscribe/", self.unsubscribe, methods=["GET", "POST"]),
            Route("/webhooks/sendgrid", self.events.endpoint, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Mount("/", app=ArchiveFiles(self.settings.site_dir, self.pages)),
        ]
        if self.prefix:
            routes = [Mount(self.prefix, routes=routes)]
        app = Starlette(routes=routes)
        app.add_middleware(SecurityHeaders)
        return app

    # -- shared ---------------------------------------------------------------------

    async def _form(self, request: Request) -> FormData:
        return await request.form(max_files=0, max_fields=100, max_part_size=64 * 1024)

    def _refused(self, request: Request, form: FormData, name: str, bound: str = "") -> Response | None:
        """Why a form post is not taken (another site's page, no valid form token, too many posts), or None."""
        token = str(form.get("form_token", ""))[:MAX_FIELD]
        if from_elsewhere(request, self.origin) or not self.signer.form_ok(token, name, bound):
            return self.pages.message(
                f"{name}/",
                "This form has expired",
                "Please go back, reload the page and send it again.",
                code=403,
            )
        if not self.forms.allow(client_of(request)):
            return self.pages.message(f"{name}/", "Too many tries", "Please wait a minute and try again.", code=429)
        return None

    def _reader(self, token: str) -> Reader | None:
        """The reader of a link token: found by its hash, then compared in constant time."""
        token = token[:64]
        if not token:
            return None
        self.refresh()
        reader = self.store.find(token)
        if reader is None or not same(self.links.token(reader.email), token):
            return None
        return reader

    def _topics(self, form: FormData) -> Topics | str:
        """The topics ticked (None: all), or what is wrong."""
        if form.get("all"):
            return None
        chosen = frozenset(
            t.slug for value in form.getlist("topic")[:200] if (t := self.ws.taxonomy.get(str(value)[:200]))
        )
        return chosen or "Choose at least one topic, or all topics."

    def _topic_names(self, topics: Topics) -> list[str]:
        """The topics' names in taxonomy order; none for "all" (the email then says "all topics")."""
        return [] if topics is None else [t.name for t in self.ws.taxonomy if t.slug in topics]

    # -- /subscribe/ ----------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        if request.method == "GET":
            wanted = self.ws.taxonomy.get(request.query_params.get("topic", "")[:200])
            return self._subscribe_page(frozenset({wanted.slug}) if wanted else frozenset(), False, "", "", None)
        form = await self._form(request)
        refused = self._refused(request, form, "subscribe")
        if refused is not None:
            return refused
        email, name = str(form.get("email", ""))[:MAX_FIELD], clean_name(str(form.get("name", "")))
        topics = self._topics(form)
        try:
            address = normalize_email(email)
        except ValueError:
            chosen = topics if not isinstance(topics, str) else frozenset()
            return self._subscribe_page(chosen, chosen is None, email, name, "Please enter a valid email address.")
        if isinstance(topics, str):
            return self._subscribe_page(frozenset(), False, email, name, topics)
        page = self.pages.message(
            "subscribe/",
            "Check your inbox",
            "We have sent a confirmation link to the address you entered. "
            "Open it and press the button to confirm: until then nothing changes.",
            "No email? Check your spam folder. We send at most one every 10 minutes to an address.",
        )
        if str(form.get("website", "")):  # the honeypot: a person never sees it, a bot fills it
            return page
        page.background = BackgroundTask(self._signup, address, name, topics)
        return page

    def _subscribe_page(self, chosen: Topics, all_: bool, email: str, name: str, error: str | None) -> Response:
        return self.pages.render(
            "subscribe.html.j2",
            "subscribe/",
            code=400 if error else 200,
            form_token=self.signer.form_token("subscribe"),
            topics=self.pages.topics(chosen),
            all_checked=all_,
            email=email,
            name=name,
            error=error,
            manage_url=self.url("manage/"),
        )

    def _signup(self, address: str, name: str, topics: Topics) -> None:
        if not self.state.may_mail(address.lower()):
            return
        nonce = self.state.add_signup(address, name, topics)
        link = self.url(f"confirm/?t={self.signer.confirm_token(nonce)}")
        self.mailer.send("confirm", address, name, link, self._topic_names(topics))

    # -- /confirm/ ------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("t", "")[:MAX_FIELD]
            if self.signer.confirm_nonce(token) is None:
                return self._expired()
            return self.pages.render(
                "confirm.html.j2", "confirm/", form_token=self.signer.form_token("confirm", token), token=token
            )
        form = await self._form(request)
        token = str(form.get("t", ""))[:MAX_FIELD]
        refused = self._refused(request, form, "confirm", token)
        if refused is not None:
            return refused
        nonce = self.signer.confirm_nonce(token)
        signup = await run_in_threadpool(self.state.take_signup, nonce) if nonce else None
        if signup is None:
            return self._expired()
        choice: dict[str, Any] = {"topics": signup.topics, "status": "active"}
        if signup.name:  # an empty name keeps the one we have
            choice["name"] = signup.name
        await run_in_threadpool(lambda: self.store.choose(signup.email, **choice))
        await run_in_threadpool(self.mailer.unsuppress, signup.email)
        token = self.links.token(signup.email)
        return self.pages.message(
            "confirm/",
            "You are subscribed",
            "Thank you: the next issue comes with the summaries on your topics.",
            links=[(self.links.preferences(token), "Change your topics"), (self.url(""), "Read the archive")],
        )

    def _expired(self) -> Response:
        return self.pages.message(
            "confirm/",
            "This link has expired",
            "Confirmation links work once, for 48 hours. Sign up again to get a new one.",
            links=[(self.url("subscribe/"), "Sign up again")],
            code=400,
        )

    # -- /preferences/ ----------------------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        token = request.query_params.get("t", "")[:MAX_FIELD]
        reader = await run_in_threadpool(self._reader, token)
        if reader is None:
            return self._unknown_link("preferences/")
        if request.method == "GET":
            return self._preferences_page(reader, token, reader.topics, reader.name)
        form = await self._form(request)
        refused = self._refused(request, form, "preferences", token)
        if refused is not None:
            return refused
        name = clean_name(str(form.get("name", "")))
        topics = self._topics(form)
        if isinstance(topics, str):
            return self._preferences_page(reader, token, frozenset(), name, error=topics)
        saved = await run_in_threadpool(
            lambda: self.store.choose(reader.email, name=name, topics=topics, status="active")
        )
        assert saved is not None
        return self._preferences_page(
            saved, token, saved.topics, saved.name, saved="Saved: the next issue follows these topics."
        )

    def _preferences_page(
        self, reader: Reader, token: str, topics: Topics, name: str, *, saved: str = "", error: str = ""
    ) -> Response:
        return self.pages.render(
            "preferences.html.j2",
            "preferences/",
            code=400 if error else 200,
            form_token=self.signer.form_token("preferences", token),
            email=reader.email,
            name=name,
            status=reader.status,
            topics=self.pages.topics(topics),
            all_checked=topics is None,
            this_month=None if error else self.pages.this_month(topics),
            saved=saved,
            error=error,
            unsubscribe_url=self.links.unsubscribe(token),
        )

    def _unknown_link(self, path: str) -> Response:
        return self.pages.message(
            path,
            "We do not recognise this link",
            "It may have been cut short by your email program. Enter your address and we email you a fresh one.",
            links=[(self.url("manage/"), "Get your link")],
            code=404,
        )

    # -- /manage/ -------------------------------------------------------------------------

    async def manage(self, request: Request) -> Response:
        if request.method == "GET":
            return self._manage_page("", None)
        form = await self._form(request)
        refused = self._refused(request, form, "manage")
        if refused is not None:
            return refused
        email = str(form.get("email", ""))[:MAX_FIELD]
        try:
            address = normalize_email(email)
        except ValueError:
            return self._manage_page(email, "Please enter a valid email address.")
        page = self.pages.message(
            "manage/",
            "Check your inbox",
            "If this address is on our list, its link is on its way. It holds your own link to change your topics "
            "or unsubscribe.",
            "No email? Check your spam folder, or the address you entered. We send at most one every 10 minutes.",
        )
        if not str(form.get("website", "")):
            page.background = BackgroundTask(self._send_link, address)
        return page

    def _manage_page(self, email: str, error: str | None) -> Response:
        return self.pages.render(
            "manage.html.j2",
            "manage/",
            code=400 if error else 200,
            form_token=self.signer.form_token("manage"),
            email=email,
            error=error,
            subscribe_url=self.url("subscribe/"),
        )

    def _send_link(self, address: str) -> None:
        self.refresh()
        reader = self.store.get(address)
        if reader is None or not self.state.may_mail(reader.key):
            return
        link = self.links.preferences(self.links.token(reader.email))
        self.mailer.send("link", reader.email, reader.name, link, self._topic_names(reader.topics))

    # -- /unsubscribe/ ----------------------------------------------------------------------

    async def unsubscribe(self, request: Request) -> Response:
        token = request.query_params.get("t", "")[:MAX_FIELD]
        reader = await run_in_threadpool(self._reader, token)
        if request.method == "POST":
            form = await self._form(request)
            if tuple(form.multi_items()) == (ONE_CLICK,):
                # RFC 8058: a mail client's one-click POST (no cookie, no form token): at once, 2xx.
                if reader is None:
                    return PlainTextResponse("unknown link", status_code=404)
                await run_in_threadpool(self.store.choose, reader.email, status="unsubscribed")
                return PlainTextResponse("unsubscribed")
            if reader is None:
                return self._unknown_link("unsubscribe/")
            refused = self._refused(request, form, "unsubscribe", token)
            if refused is not None:
                return refused
            status: Status = "active" if form.get("action") == "undo" else "unsubscribed"
            changed = await run_in_threadpool(self.store.choose, reader.email, status=status)
            assert changed is not None
            reader = changed
        elif reader is None:
            return self._unknown_link("unsubscribe/")
        return self.pages.render(
            "unsubscribe.html.j2",
            "unsubscribe/",
            form_token=self.signer.form_token("unsubscribe", token),
            email=reader.email,
            status=reader.status,
            preferences_url=self.links.preferences(token),
        )

    # -- /healthz ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        def check() -> None:
            # Through the reads engine: a probe every few seconds must not take SQLite's write lock.
            with self.ledger.reads.connect() as conn:
                conn.exec_driver_sql("SELECT 1")

        await run_in_threadpool(check)
        return PlainTextResponse("ok")
