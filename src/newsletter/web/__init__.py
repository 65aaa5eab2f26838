"""Web: what the tool serves and publishes: the static archive with its feeds, and the author's preview.

    archive  every ready issue as a static site (views, feeds; templates/web/)
    preview  ``newsletter preview``: the variants in a local page that follows the author's edits
    readers  ``newsletter serve``: sign-up, preferences, unsubscribe, SendGrid's events, the archive

May import: ``newsletter.delivery``, ``newsletter.audience``, ``newsletter.render``,
``newsletter.content`` and below; never ``newsletter.schedule`` or ``newsletter.cli``.
"""
