"""Schedule: each month's issue goes out on the 1st (or at its ``send_at``) with nobody at a keyboard.

    policy   when runs fall (the monthly trigger, ``send_at``) and whether an issue is ready
    runner   what one run does: the due issues through ``delivery.send``, then the author's report
    report   the report, sent the way the issue goes (or kept in the outbox)
    attempts which ``send_at`` times were acted on
    service  APScheduler in the foreground: the job store, misfires, one scheduler per database

May import: ``newsletter.delivery`` and everything below it.

The names below are stored in job stores by APScheduler (pickled trigger,
textual job references): they stay importable from here.
"""

from newsletter.schedule.policy import MonthlyTrigger
from newsletter.schedule.runner import monthly_job, send_at_job

__all__ = ["MonthlyTrigger", "monthly_job", "send_at_job"]
