"""Audience: the readers (``subscribers/*.csv``) and who gets which selection of an issue.

    subscribers/*.csv ─ subscribers ─▶ Subscriber ─ personalise ─▶ Audience (readers per selection, skipped)
                          │
               store (readers table) ◀── readers' own choices (sign-up, topics, unsubscribe; choices: the merge rule)

Every command reads readers through ``store``: the files synced into the
database (``sync``, which parses them only when they change and keeps their
problems; ``file_layer``, which writes them a chunk at a time), readers' own
choices merged. Rendering is per variant, never per reader: readers with the
same selection share one. May import:
``newsletter.content``, ``newsletter.db``, ``newsletter.settings``,
``newsletter.errors``, ``newsletter.support``.
"""
