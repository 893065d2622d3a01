"""What a running service holds: settings, database, secret box, probe and job worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.jobs.create import Prober
from rke2_manager.models import JobStatus
from rke2_manager.vault import SecretBox


class Waker(Protocol):
    def wake(self) -> None: ...

    def stop_job(self, job_id: int, reason: str, status: JobStatus) -> bool: ...


@dataclass
class AppContext:
    settings: Settings
    db: Database
    box: SecretBox
    prober: Prober
    wakers: list[Waker] = field(default_factory=list)

    def wake_workers(self) -> None:
        """Tell in-process workers that a job may be ready (others poll or are notified)."""
        for waker in self.wakers:
            waker.wake()

    def stop_job(self, job_id: int, reason: str, status: JobStatus) -> None:
        """Stop the job's run now if it runs in this process (workers elsewhere notice the
        stop request within ``lock_check_interval``)."""
        for waker in self.wakers:
            waker.stop_job(job_id, reason, status)
