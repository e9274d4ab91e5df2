"""Snakemake's scheduler keeps one pending re-evaluation timer (icldistill.scheduler)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from snakemake.scheduling.job_scheduler import JobScheduler

from icldistill import scheduler

from .conftest import ROOT


def _timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer)]


def test_rounds_asking_for_a_wake_up_leave_one_pending_daemon_timer_that_wakes_once():
    fake = SimpleNamespace(_open_jobs=threading.Semaphore(0))
    before = set(_timers())  # timers of other tests may end meanwhile; none start
    for _ in range(50):  # fifty scheduling rounds, each asking for a wake-up in 0.2 s
        scheduler.schedule_reevaluation_once(fake, 0.2)
    assert set(_timers()) - before == {getattr(fake, scheduler._PENDING)}
    assert getattr(fake, scheduler._PENDING).daemon  # Snakemake's exit does not wait for it
    assert not fake._open_jobs.acquire(timeout=0.05)  # not before the delay
    assert fake._open_jobs.acquire(timeout=2)  # woken once
    assert not fake._open_jobs.acquire(timeout=0.4)  # and only once
    # the round that wake-up started may ask again: a new timer, not a dropped request
    scheduler.schedule_reevaluation_once(fake, 0.05)
    assert fake._open_jobs.acquire(timeout=2)


def test_the_workflow_installs_it_on_snakemakes_scheduler():
    original = JobScheduler._schedule_reevalutation
    try:
        assert scheduler.install()
        assert JobScheduler._schedule_reevalutation is scheduler.schedule_reevaluation_once
    finally:
        JobScheduler._schedule_reevalutation = original
    assert "_scheduler.install()" in (ROOT / "workflow/rules/common.smk").read_text(encoding="utf-8")


def test_timers_do_not_pile_up_in_a_workflow_run(tmp_path):
    """A grid whose jobs wait for cores: Snakemake's own scheduling left one timer per finished
    job alive (about 200 after 220 jobs); with the workflow's scheduler, a handful."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        f"""
import sys
sys.path.insert(0, {str(ROOT / "src")!r})
from icldistill import scheduler
scheduler.install()
rule all:
    input: "count.txt", expand("q/{{i}}.txt", i=range(60))
rule quick:
    output: "q/{{i}}.txt"
    threads: 2
    shell: "sleep 0.02; touch {{output}}"
rule count:
    input: expand("q/{{i}}.txt", i=range(50))
    output: "count.txt"
    threads: 2
    priority: 100
    shell: "sleep 3; touch {{output}}"
""",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path), "-c", "2", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    try:
        while proc.poll() is None:
            try:
                peak = max(peak, len(list(Path(f"/proc/{proc.pid}/task").iterdir())))
            except FileNotFoundError:
                break
            time.sleep(0.2)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert peak < 20, f"the scheduler process had {peak} threads"
