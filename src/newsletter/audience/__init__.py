"""Audience: the readers (``subscribers/*.csv``) and who gets which selection of an issue.

    subscribers/*.csv ─ subscribers ─▶ Subscriber ─ personalise ─▶ Audience (readers per selection, skipped)

Rendering is per variant, never per reader: readers with the same selection
share one. May import: ``newsletter.content``, ``newsletter.settings``,
``newsletter.errors``, ``newsletter.support``.
"""
