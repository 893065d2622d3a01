"""Dispatch-latency benchmark: how soon the next job runs once a cluster's lock passes on.

Runs in one process against a fresh database (a temp SQLite file, and a fresh database on the
PostgreSQL server): the real job worker (``rke2_manager.jobs.runner.worker.Worker``) and the
real services, with the Ansible run replaced by a near-instant fake, so the figures measure
dispatch, not Ansible. Three scenarios, each repeated ``--runs`` times:

(a) queue     job N holds the cluster (its fake playbook waits on a gate); job N+1, an install,
              is queued with ``on_busy="queue"``; the gate opens, N's ``finish`` transaction
              starts N+1, whose thread wakes the worker in-process; N+1 runs up to its own
              gate and becomes the holder of the next run (SPEC §4, operation queue).
(b) G3        ``scale_add`` of one server and one agent on a fresh cluster whose initial master
              is ACTIVE: the servers job succeeds and hands the lock straight to the agents job
              in its ``finish`` transaction (SPEC §4, G3 complete).
(c) no wake   a job of a worker we do not run holds the cluster, an install is queued, and the
              lock is freed by a cancel made outside the worker, at a random point of its poll
              cycle (as an API process without a worker of its own would do): no in-process
              wake-up reaches the worker. On SQLite only its poll finds the job
              (``--no-wake-runs`` runs only, since each lasts about a poll interval); on
              PostgreSQL the cancel's ``pg_notify`` wakes it through its LISTEN connection.

Every delay is measured from the ending job's ``finished_at`` (set at the start of its
``finish`` transaction) to: the commit of that transaction (the DB-level hand-over: the next job
is ``running`` and holds the lock), the worker beginning the claim that takes it (the wake-up),
that claim committed (the job runs in a worker), the next job's stored ``started_at``, and its
fake playbook being called. ``started_at`` is set by the claim and set again by
``spec.prepare``; the stored value is prepare's. The worker runs with each ``--poll-
intervals`` value (default: the setting's default and 0.05 s), which only matters when no wake-
up arrives. Timing is reported, never asserted; on a busy machine the figures move a lot from
run to run, so compare the rows of one run with each other.

    .venv/bin/python bench/dispatch_latency.py
    .venv/bin/python bench/dispatch_latency.py --databases sqlite --runs 50
    .venv/bin/python bench/dispatch_latency.py --postgres-url postgresql://postgres@127.0.0.1/test

Exit status: 0 if every job succeeded, started after its predecessor finished and ran in the
bench's worker, each queued job was first in line, and every lock ended idle with nothing left
queued or running; 1 otherwise; 2 if a database could not be set up.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from rke2_manager import migrate
from rke2_manager.config import Settings
from rke2_manager.context import AppContext
from rke2_manager.db import Database
from rke2_manager.execution.ansible_service import RunOutcome
from rke2_manager.guardrails import ProbeResult
from rke2_manager.jobs.control import cancel_job
from rke2_manager.jobs.create import start_install, start_scale_add
from rke2_manager.jobs.runner import run as jobrun
from rke2_manager.jobs.runner.fencing import Claim
from rke2_manager.jobs.runner.worker import Worker
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, Node, NodeStatus
from rke2_manager.validation import NodeIn
from rke2_manager.vault import SecretBox

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_POLL = Settings.model_fields["worker_poll_interval"].default
CONCURRENCY = Settings.model_fields["worker_concurrency"].default
ABSENT_WORKER = "absent-worker"  # owns (c)'s holder job, so our worker never claims it
WAIT = 30.0  # seconds to wait for one job before calling the run lost


# --------------------------------------------------------------------------- instrumentation


class Timeline:
    """Wall-clock moments (``time.time()``) per job id, written by the hooks below."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[int, dict[str, float]] = {}
        self._done: dict[int, threading.Event] = {}

    def reset(self) -> None:
        with self._lock:
            self._marks.clear()
            self._done.clear()

    def mark(self, job_id: int, what: str, at: float | None = None) -> None:
        with self._lock:
            self._marks.setdefault(job_id, {})[what] = time.time() if at is None else at

    def get(self, job_id: int, what: str) -> float:
        with self._lock:
            return self._marks.get(job_id, {}).get(what, math.nan)

    def _event(self, job_id: int) -> threading.Event:
        with self._lock:
            return self._done.setdefault(job_id, threading.Event())

    def done(self, job_id: int) -> None:
        self._event(job_id).set()

    def wait_done(self, job_id: int, timeout: float = WAIT) -> bool:
        return self._event(job_id).wait(timeout)


TIMELINE = Timeline()


def current_job_id() -> int:
    """The worker runs each job in a thread named ``job-<id>``."""
    name = threading.current_thread().name
    return int(name[4:]) if name.startswith("job-") and name[4:].isdigit() else -1


@dataclass
class Hold:
    entered: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)


class FakePlaybook:
    """Stands in for ``execution.ansible_service.run_playbook``: returns success at once (after
    ``play_seconds``), or, for the first run after :meth:`arm`, once the hold's gate opens."""

    def __init__(self, play_seconds: float) -> None:
        self.play_seconds = play_seconds
        self._lock = threading.Lock()
        self._armed: Hold | None = None
        self.calls = 0

    def arm(self) -> Hold:
        hold = Hold()
        with self._lock:
            self._armed = hold
        return hold

    def __call__(
        self,
        spec: Any,
        on_host: Callable[..., None],
        on_output: Callable[[list[str]], None],
        should_cancel: Callable[[], bool],
    ) -> RunOutcome:
        TIMELINE.mark(current_job_id(), "play")
        with self._lock:
            hold, self._armed = self._armed, None
            self.calls += 1
        if hold is not None:
            hold.entered.set()
            while not hold.gate.wait(0.01):
                if should_cancel():
                    return RunOutcome(status="canceled", rc=None)
        elif self.play_seconds > 0:
            time.sleep(self.play_seconds)
        return RunOutcome(status="successful", rc=0)


_real_finish = jobrun.finish


def timed_finish(ctx: AppContext, claim: Claim, *args: Any, **kwargs: Any) -> None:
    """``jobrun.finish`` (sets finished_at, passes the lock on, commits), then note the time."""
    try:
        _real_finish(ctx, claim, *args, **kwargs)
    finally:
        TIMELINE.mark(claim.job_id, "handed_over")
        TIMELINE.done(claim.job_id)


@contextmanager
def patched(fake: FakePlaybook) -> Iterator[None]:
    """Swap the Ansible run for ``fake`` and time ``finish``, where ``jobrun.execute`` looks
    them up (module globals, read at call time)."""
    names = {"run_playbook": fake, "finish": timed_finish}
    module = vars(jobrun)
    saved = {name: module[name] for name in names}
    module.update(names)
    try:
        yield
    finally:
        module.update(saved)


class BenchWorker(Worker):
    """The real worker; only notes when a successful claim began and when it committed."""

    def claim(self) -> Claim | None:
        began = time.time()
        claim = super().claim()
        if claim is not None:
            TIMELINE.mark(claim.job_id, "claim_began", began)
            TIMELINE.mark(claim.job_id, "claimed")
        return claim


class LogCollector(logging.Handler):
    """Keeps the service's warnings and errors to report them at the end of each configuration."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        self.records.append(line[:240])


def dummy_prober(address: str) -> ProbeResult:
    return ProbeResult(address, ok=True)


# --------------------------------------------------------------------------- databases


@dataclass
class BenchDatabase:
    url: str
    label: str
    admin_url: URL | None = None
    name: str | None = None

    def drop(self) -> None:
        if self.admin_url is None or self.name is None:
            return
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            engine.dispose()


def sqlite_database(tmp: Path) -> BenchDatabase:
    path = tmp / "bench.db"
    return BenchDatabase(url=f"sqlite:///{path}", label=f"SQLite (temp file {path})")


def postgres_database(raw_url: str) -> BenchDatabase:
    """A fresh ``bench_<random>`` database on the server of ``raw_url`` (dropped afterwards)."""
    admin = make_url(raw_url).set(drivername="postgresql+psycopg")
    name = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    url = admin.set(database=name)
    return BenchDatabase(
        url=url.render_as_string(hide_password=False),
        label=f"PostgreSQL {url.render_as_string(hide_password=True)} (fresh database)",
        admin_url=admin,
        name=name,
    )


# --------------------------------------------------------------------------- one configuration

# (label, timeline mark or DB column) of each delay, all measured from the ending job's
# finished_at; "started_at" is the stored column, the rest are timeline marks.
STEPS = [
    ("lock handed over (commit)", "handed_over_prev"),
    ("worker begins its claim", "claim_began"),
    ("claimed: running in worker", "claimed"),
    ("started_at (stored)", "started_at"),
    ("playbook called", "play"),
]


@dataclass
class Run:
    """One hand-over: the ending job, the next one, and (after :meth:`Bench.measure`) the delays
    in seconds from the ending job's finished_at."""

    ended: int
    next: int
    problems: list[str] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)


class Bench:
    """A context, a fake playbook and a running worker on one database with one poll interval."""

    def __init__(self, url: str, data_dir: Path, poll: float, play_seconds: float) -> None:
        self.settings = Settings(
            database_url=url,
            secret_key="bench",
            data_dir=data_dir,
            allowed_networks=["127.0.0.0/8"],
            worker_poll_interval=poll,
            _env_file=None,
        )
        self.db = Database(self.settings.database_url)
        self.ctx = AppContext(
            settings=self.settings,
            db=self.db,
            box=SecretBox.from_settings(self.settings),
            prober=dummy_prober,
        )
        self.fake = FakePlaybook(play_seconds)
        self.worker = BenchWorker(self.ctx)

    def start(self) -> None:
        self.ctx.wakers.append(self.worker)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(timeout=10)
        if self.worker in self.ctx.wakers:
            self.ctx.wakers.remove(self.worker)
        self.db.dispose()

    # setup ---------------------------------------------------------------------------------
    def new_clusters(self, tag: str, count: int) -> list[int]:
        """Clusters whose initial master ``m1`` is ACTIVE, made in one transaction (no SSH key
        generation: the playbook is faked)."""
        key = self.ctx.box.encrypt("not a key: the playbook is faked")
        with self.db.transaction() as session:
            clusters = []
            for i in range(count):
                cluster = Cluster(
                    name=f"bench-{tag}-{i}-{secrets.token_hex(3)}",
                    ssh_private_key_enc=key,
                    token_enc=self.ctx.box.encrypt(secrets.token_hex(16)),
                )
                cluster.nodes = [
                    Node(
                        hostname="m1",
                        ip="127.0.1.1",
                        role="server",
                        status=NodeStatus.ACTIVE,
                        is_initial_master=True,
                    )
                ]
                clusters.append(cluster)
            session.add_all(clusters)
            session.flush()
            return [c.id for c in clusters]

    # measuring -----------------------------------------------------------------------------
    def measure(self, runs: list[Run]) -> None:
        """Fill in each run's delays from the stored jobs and the timeline (one query)."""
        ids = {r.ended for r in runs} | {r.next for r in runs}
        with self.db.read_session() as session:
            jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
        for run in runs:
            first, second = jobs.get(run.ended), jobs.get(run.next)
            if first is None or second is None or first.finished_at is None:
                run.problems.append(f"jobs {run.ended}/{run.next} missing or unfinished")
                continue
            t0 = first.finished_at.timestamp()
            run.delays["handed_over_prev"] = TIMELINE.get(run.ended, "handed_over") - t0
            for mark in ("claim_began", "claimed", "play"):
                run.delays[mark] = TIMELINE.get(run.next, mark) - t0
            started: datetime | None = second.started_at
            run.delays["started_at"] = started.timestamp() - t0 if started else math.nan
            if second.status != JobStatus.SUCCEEDED:
                run.problems.append(f"job {run.next} ended {second.status}: {second.reason}")
            if second.worker_id != self.worker.id:
                run.problems.append(f"job {run.next} ran in worker {second.worker_id!r}")
            if started is not None and started < first.finished_at:
                run.problems.append(f"job {run.next} started before job {run.ended} finished")

    def leftovers(self) -> list[str]:
        """Anything not settled once every run is over: locked clusters, unfinished jobs."""
        with self.db.read_session() as session:
            locked = session.scalars(
                select(Cluster.id).where(Cluster.operation_status != LockStatus.IDLE)
            ).all()
            unfinished = session.scalars(
                select(Job.id).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            ).all()
        problems = [f"cluster {c} still locked after the runs" for c in locked]
        return problems + [f"job {j} still queued or running after the runs" for j in unfinished]

    # scenarios -----------------------------------------------------------------------------
    def queue_chain(self, runs: int) -> list[Run]:
        """(a), as a chain on one cluster: while job N waits at its gate, job N+1 is queued;
        N's gate opens, N's ``finish`` starts N+1, which runs up to its own gate, and so on.
        The ending job's thread wakes the worker in-process."""
        (cluster_id,) = self.new_clusters("queue", 1)
        hold = self.fake.arm()
        with self.db.transaction() as session:
            current = start_install(session, self.settings, cluster_id, "bench").job.id
        self.ctx.wake_workers()  # as the API does after a 202
        if not hold.entered.wait(WAIT):
            raise RuntimeError(f"job {current} never reached its playbook")
        result: list[Run] = []
        for _ in range(runs):
            with self.db.transaction() as session:
                accepted = start_install(
                    session, self.settings, cluster_id, "bench", on_busy="queue"
                )
                queued, position = accepted.job.id, accepted.position
            # The API also wakes the workers after a 202, but a queued job gives them nothing
            # to claim; skipped so that an empty claim does not race the holder's finish.
            run = Run(current, queued)
            if position != 1:
                run.problems.append(f"queued job {queued} got position {position}, expected 1")
            result.append(run)
            next_hold = self.fake.arm()
            hold.gate.set()
            if not next_hold.entered.wait(WAIT):
                run.problems.append(f"queued job {queued} never reached its playbook")
                break
            current, hold = queued, next_hold
        hold.gate.set()
        if not TIMELINE.wait_done(current):
            result[-1].problems.append(f"job {current} did not finish within {WAIT:.0f} s")
        return result

    def g3_runs(self, runs: int) -> list[Run]:
        """(b): scale_add of one server and one agent, each time on a fresh cluster; the servers
        job hands the lock to the agents job in its ``finish`` transaction."""
        result: list[Run] = []
        for i, cluster_id in enumerate(self.new_clusters("g3", runs)):
            nodes = [
                NodeIn(hostname=f"s{i}", ip="127.0.2.1", role="server"),
                NodeIn(hostname=f"a{i}", ip="127.0.3.1", role="agent"),
            ]
            with self.db.transaction() as session:
                accepted = start_scale_add(
                    session, self.settings, cluster_id, nodes, "bench", None, self.ctx.prober
                )
                servers, agents = accepted.job.id, [j.id for j in accepted.waiting]
            self.ctx.wake_workers()
            if len(agents) != 1:
                result.append(Run(servers, servers, [f"scale_add made {1 + len(agents)} jobs"]))
                TIMELINE.wait_done(servers)
                continue
            run = Run(servers, agents[0])
            if not TIMELINE.wait_done(agents[0]):
                run.problems.append(f"agents job {agents[0]} did not finish within {WAIT:.0f} s")
            result.append(run)
        return result

    def no_wake_runs(self, runs: int) -> list[Run]:
        """(c): the holder belongs to a worker elsewhere; a cancel made here (not through the
        API, so nobody calls ``wake_workers``) frees the lock and starts the queued job."""
        (cluster_id,) = self.new_clusters("nowake", 1)
        result: list[Run] = []
        for _ in range(runs):
            with self.db.transaction() as session:
                holder_job = start_install(session, self.settings, cluster_id, "bench").job
                holder_job.worker_id = ABSENT_WORKER  # claimed already, by a worker not ours
                holder = holder_job.id
            with self.db.transaction() as session:
                queued = start_install(
                    session, self.settings, cluster_id, "bench", on_busy="queue"
                ).job.id
            # The worker went back to sleep when the previous run's job ended; cancel at a
            # random point of its poll cycle, as an outside release would.
            time.sleep(random.uniform(0, self.settings.worker_poll_interval))
            with self.db.transaction() as session:
                cancel_job(session, self.settings, holder, "bench")
            TIMELINE.mark(holder, "handed_over")  # the cancel's transaction has committed
            run = Run(holder, queued)
            if not TIMELINE.wait_done(queued):
                run.problems.append(f"queued job {queued} did not finish within {WAIT:.0f} s")
            result.append(run)
        return result


# --------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(seconds: float) -> str:
    return "       -" if math.isnan(seconds) else f"{seconds * 1000:8.2f}"


@dataclass
class Series:
    """The runs of one scenario in one configuration."""

    scenario: str
    runs: list[Run] = field(default_factory=list)
    wall: float = 0.0

    def values(self, key: str) -> list[float]:
        return sorted(
            r.delays[key] for r in self.runs if not math.isnan(r.delays.get(key, math.nan))
        )

    @property
    def problems(self) -> list[str]:
        return [p for r in self.runs for p in r.problems]


def print_series(series: Series, note: str) -> None:
    print(f"  {series.scenario}   ({len(series.runs)} runs in {series.wall:.1f} s; {note})")
    print("    from the ending job's finished_at to       n    p50 ms    p99 ms    max ms")
    for label, key in STEPS:
        values = series.values(key)
        print(
            f"    {label:<38} {len(values):4d}  {ms(percentile(values, 50))}  "
            f"{ms(percentile(values, 99))}  {ms(values[-1] if values else math.nan)}"
        )
    problems = series.problems
    if problems:
        print(f"    problems: {len(problems)}")
        for line in list(dict.fromkeys(problems))[:5]:
            print(f"      {line}")


@dataclass
class ConfigResult:
    database: str
    poll: float
    series: list[Series]
    log_lines: list[str]
    leftovers: list[str]

    @property
    def ok(self) -> bool:
        return not self.leftovers and not any(s.problems for s in self.series)


def run_config(
    db: BenchDatabase,
    data_dir: Path,
    poll: float,
    args: argparse.Namespace,
    collector: LogCollector,
) -> ConfigResult:
    TIMELINE.reset()
    first_log = len(collector.records)
    bench = Bench(db.url, data_dir, poll, args.play_ms / 1000)
    with patched(bench.fake):
        bench.start()
        try:
            results: list[Series] = []
            scenarios: list[tuple[str, Callable[[int], list[Run]], int]] = [
                (
                    "(a) queue: lock freed by the ending job -> next queued job",
                    bench.queue_chain,
                    args.runs,
                ),
                ("(b) G3: servers job succeeded -> its agents job", bench.g3_runs, args.runs),
                # Without a wake-up each run lasts about a poll interval: fewer runs.
                (
                    "(c) no wake: lock freed by a cancel outside the worker -> next job",
                    bench.no_wake_runs,
                    min(args.runs, args.no_wake_runs),
                ),
            ]
            for title, scenario, runs in scenarios:
                t0 = time.perf_counter()
                series = Series(title, scenario(runs))
                series.wall = time.perf_counter() - t0
                bench.measure(series.runs)
                results.append(series)
            leftovers = bench.leftovers()
        finally:
            bench.stop()
    return ConfigResult(db.label, poll, results, collector.records[first_log:], leftovers)


def print_config(result: ConfigResult, args: argparse.Namespace) -> None:
    default = " (the default)" if result.poll == DEFAULT_POLL else ""
    print()
    print(
        f"worker_poll_interval {result.poll:g} s{default}; worker_concurrency {CONCURRENCY}; "
        f"fake playbook {args.play_ms:g} ms"
    )
    for series in result.series:
        if not series.scenario.startswith("(c)"):
            note = "the ending job's thread wakes the worker in-process"
        elif result.database.startswith("PostgreSQL"):
            note = "no in-process wake-up: the cancel's NOTIFY wakes the worker"
        else:
            note = "the worker is not woken: its poll finds the job"
        print_series(series, note)
    if result.leftovers:
        print(f"  not settled after the runs: {len(result.leftovers)}")
        for line in result.leftovers[:5]:
            print(f"    {line}")
    else:
        print("  after the runs: every lock idle, no job queued or running")
    if result.log_lines:
        counts = Counter(line.split(":", 1)[0] for line in result.log_lines)
        print(f"  service log: {len(result.log_lines)} warnings/errors {dict(counts)}")
        for line in list(dict.fromkeys(result.log_lines))[:6]:
            print(f"    {line}")
    else:
        print("  service log: no warnings or errors")


def print_summary(results: list[ConfigResult]) -> None:
    print()
    print("summary: p50 / p99 ms from the ending job's finished_at to the next job claimed")
    print("(running in a worker) and, in brackets, to the lock handed over in the database")
    columns = "".join(f"  {name:>27}" for name in ("(a) queue", "(b) G3", "(c) no wake"))
    print(f"  {'database':<11} {'poll s':>6}{columns}")
    for result in results:
        cells = []
        for series in result.series:
            claimed = series.values("claimed")
            handed = series.values("handed_over_prev")
            cells.append(
                f"{percentile(claimed, 50) * 1000:6.1f}/{percentile(claimed, 99) * 1000:6.1f}"
                f" [{percentile(handed, 50) * 1000:4.1f}/{percentile(handed, 99) * 1000:5.1f}]"
            )
        name = result.database.split()[0]
        print(f"  {name:<11} {result.poll:>6g}  " + "  ".join(f"{c:>27}" for c in cells))


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="hand-overs per scenario")
    parser.add_argument(
        "--no-wake-runs",
        type=int,
        default=10,
        help="runs of (c), which each last about one poll interval",
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="server where a fresh bench_<random> database is made and dropped",
    )
    parser.add_argument(
        "--poll-intervals",
        default=f"{DEFAULT_POLL:g},0.05",
        help="comma-separated worker_poll_interval values to run with, seconds",
    )
    parser.add_argument(
        "--play-ms", type=float, default=2.0, help="how long each fake playbook run takes"
    )
    args = parser.parse_args(argv)
    args.databases = [d.strip().lower() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown or not args.databases:
        parser.error(f"--databases: unknown {sorted(unknown)}; use sqlite and/or postgresql")
    args.polls = [float(p) for p in args.poll_intervals.split(",") if p.strip()]
    if args.runs < 1 or args.no_wake_runs < 1 or not args.polls or min(args.polls) <= 0:
        parser.error("--runs and --no-wake-runs must be >= 1, poll intervals > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    collector = LogCollector()
    service_log = logging.getLogger("rke2_manager")
    service_log.addHandler(collector)
    service_log.setLevel(logging.WARNING)
    service_log.propagate = False  # reported at the end of each configuration instead
    print(
        f"dispatch latency: {args.runs} runs per scenario, poll intervals "
        f"{', '.join(f'{p:g} s' for p in args.polls)}; {os.cpu_count()} CPUs; "
        f"python {sys.version.split()[0]}"
    )
    results: list[ConfigResult] = []
    status = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rke2m-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for kind in args.databases:
            try:
                db = (
                    sqlite_database(tmp)
                    if kind == "sqlite"
                    else postgres_database(args.postgres_url)
                )
            except OperationalError as exc:
                print(f"\n{kind}: cannot set up the database: {str(exc).splitlines()[0]}")
                status = max(status, 2)
                continue
            try:
                print()
                print(f"database   {db.label}")
                engine_db = Database(db.url)
                t0 = time.perf_counter()
                migrate.upgrade(engine_db.engine)
                engine_db.dispose()
                print(f"migrate    {time.perf_counter() - t0:.2f} s")
                for poll in args.polls:
                    result = run_config(db, tmp / "data", poll, args, collector)
                    print_config(result, args)
                    results.append(result)
                    if not result.ok and status == 0:
                        status = 1
            finally:
                db.drop()
    if results:
        print_summary(results)
    print()
    print(f"total {time.perf_counter() - started:.1f} s")
    verdicts = {0: "OK", 1: "PROBLEM (see above)", 2: "INCOMPLETE: a database could not be set up"}
    print(f"verdict: {verdicts[status]}")
    return status


if __name__ == "__main__":
    sys.exit(main())
