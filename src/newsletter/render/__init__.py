"""Render: an issue (or a selection of its summaries) → one email's HTML and text, per variant.

    Renderer(settings).render(issue, slugs) -> Variant                       (renderer.py)
        ├── email.mjml.j2 ─ Jinja2 ─▶ MJML ─ mjml-python ─▶ HTML ─ premailer ─▶ inlined HTML   (mjml.py)
        └── email.txt.j2  ─ Jinja2 ─▶ wrapped plain text                                     (text.py)

One Jinja environment for both (``environment.py``); per-reader values are
placeholder tokens filled in later (``variant.py``), so one render serves
every reader of the same selection. ``sizes`` judges the result against
Gmail's clipping limit and ``build`` writes every variant to files.

May import: ``newsletter.content``, ``newsletter.settings``, ``newsletter.errors``, ``newsletter.support``.
"""
