"""Delivery: an audience's messages handed to a provider, each outcome in the ledger, nobody twice.

    Plan (audience + sender) ─ send ─▶ claim (ledger) ─▶ backend.build ─▶ backend.post ─▶ record (ledger)

``send`` is the one send path (the command and the scheduler both call it);
``ledger`` is the state machine that makes it safe to run again; ``links``
makes each reader's signed links; ``backends/`` holds one module per
provider behind ``backends.base.Backend``.

May import: ``newsletter.audience``, ``newsletter.render``, ``newsletter.content``,
``newsletter.settings``, ``newsletter.errors``, ``newsletter.support``.
"""
