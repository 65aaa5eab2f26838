"""``newsletter serve``: the readers' own pages, the provider's events and the archive, on one host.

    app      the routes: /subscribe/, /confirm/, /preferences/, /manage/, /unsubscribe/, /healthz
    webhook  /webhooks/sendgrid: signed events (bounce, spam report, unsubscribe...) → readers
    files    the built archive (site/) at the same base URL
    pages    the pages (templates/web/readers/, in the archive's look)
    guard    headers (CSP, no referrer), origin checks, rate limits, a log without tokens
    tokens   signed, expiring confirmation links and form tokens (itsdangerous)
    state    pending sign-ups, mail rate limit, events seen (tables of newsletter.db)
    mail     the confirmation and "your link" emails through the configured backend
    server   uvicorn: settings checked, the app run

Readers themselves live in the ``readers`` table (``newsletter.audience.store``),
which every send reads.
"""

from newsletter.web.readers.server import DEFAULT_HOST, DEFAULT_PORT, Serving, bind, serve, serving_settings

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Serving", "bind", "serve", "serving_settings"]
