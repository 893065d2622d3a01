"""Reading jobs and their logs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager.errors import NotFound
from rke2_manager.models import Job, JobLogLine, JobStatus


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    return job


def list_jobs(
    session: Session, cluster_id: int | None, status: JobStatus | None, limit: int, offset: int
) -> Sequence[Job]:
    stmt = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if cluster_id is not None:
        stmt = stmt.where(Job.cluster_id == cluster_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


def read_log(session: Session, job_id: int, after: int, limit: int) -> Sequence[JobLogLine]:
    return session.scalars(
        select(JobLogLine)
        .where(JobLogLine.job_id == job_id, JobLogLine.seq > after)
        .order_by(JobLogLine.seq)
        .limit(limit)
    ).all()
