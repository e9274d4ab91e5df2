"""One pending re-evaluation timer in Snakemake's job scheduler, not one per finished job.

Snakemake 9's ``JobScheduler.schedule`` ends every round in which jobs were ready with
``_schedule_reevalutation(timespan)`` (``--max-jobs-per-timespan``, default 100/1s): a new
``threading.Timer`` that wakes the scheduler for another round, which starts another timer. Each
finished job adds a round of its own, so while jobs wait for cores (always, in a grid on a few
cores) the chains add up: after n jobs, n timers wake the scheduler n times a second, and each
round walks the ready jobs. On the default grid (627 jobs, 2 cores) the scheduler process had
~190 live timers after 200 jobs and took a quarter of a core. The default grid's wall time did
not change with the fix (its jobs leave CPU idle between them), but the load grows with the grid.

The round a timer buys is only needed once per timespan (to submit jobs the rate limit held
back), so :func:`install` keeps one pending timer: a request while one is pending is dropped.
The timer is a daemon thread, so Snakemake's exit does not wait for it. Written here because
the fix belongs upstream and the workflow pins Snakemake < 10; :func:`install` does nothing
where the method it replaces is missing.
"""

from __future__ import annotations

import threading
from typing import Any

#: the attribute that holds a scheduler's pending timer
_PENDING = "_icldistill_reevaluation"


def schedule_reevaluation_once(scheduler: Any, delay: float) -> None:
    """Wake ``scheduler`` for another round after ``delay`` seconds, unless a wake-up is
    already pending (it comes as soon or sooner for the rate limit's fixed timespan)."""
    if getattr(scheduler, _PENDING, None) is not None:
        return

    def wake() -> None:
        # cleared before the release: the round it wakes may ask for the next wake-up
        setattr(scheduler, _PENDING, None)
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    setattr(scheduler, _PENDING, timer)
    timer.start()


def install() -> bool:
    """Replace Snakemake's re-evaluation scheduling with :func:`schedule_reevaluation_once`;
    True if the scheduler had the method (Snakemake spells it ``_schedule_reevalutation``)."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler as cls
    except ImportError:  # another Snakemake layout: leave it as it is
        return False
    if not hasattr(cls, "_schedule_reevalutation"):
        return False
    cls._schedule_reevalutation = schedule_reevaluation_once
    return True
