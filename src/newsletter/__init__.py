"""newsletter: build and send a monthly research digest by email.

The pipeline, one module per stage:
``content`` (issue sources, taxonomy) → ``render`` (Jinja → MJML → HTML, text)
→ ``personalise`` (audience, variants) → ``backends`` (delivery), with
``ledger`` beside the send; ``cli`` is a thin layer over all of it.
"""

__version__ = "0.1.0"
