"""Content: the author's issue folders read into a typed model, with every problem at its file and line.

    issues/topics.yaml ─ taxonomy ─┐
    issues/YYYY-MM/*.md ─ sources ─┴─ loader ─▶ model (Issue, Summary) ─ checks ─▶ Checked

Also here because every later stage needs them: the authors' Markdown
(``markdown``), APA citations (``citation``), the archive's public URLs
(``urls``) and the newsletter folder as a whole (``workspace``).

May import: ``newsletter.settings``, ``newsletter.errors``, ``newsletter.support``.
"""
