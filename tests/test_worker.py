"""The worker: in-process through the Worker class, and as real runworker processes."""

import os
import signal
import time

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job, JobAttempt, Outcome, Status
from jobs.models import Worker as WorkerRow
from jobs.worker.loop import Worker
from tests.conftest import wait_for
from tests.helpers import free_port, kill_other_connections
from tests.tcp_proxy import TcpProxy


def drain(**options) -> int:
    options.setdefault("poll_interval", 0.01)
    return Worker(burst=True, install_signal_handlers=False, **options).run()


def status_of(job) -> str:
    return Job.objects.get(pk=job.pk).status


@pytest.mark.django_db(transaction=True)
class TestWorkerClass:
    def test_runs_jobs_and_records_results(self, make_job):
        jobs = [make_job(task="echo", payload=i) for i in range(3)]
        assert drain(batch=2) == 3
        assert [Job.objects.get(pk=j.pk).result for j in jobs] == [0, 1, 2]
        assert not Job.objects.exclude(status=Status.DONE).exists()

    def test_records_error_and_traceback_then_retries_after_the_backoff(self, make_job):
        """README: a failed attempt n with attempts left is queued again with run_after
        uniform in [d/2, d] after the failure, d = min(JOBS_BACKOFF_MAX,
        JOBS_BACKOFF_BASE * 2^(n-1)): with the defaults (2, 600), 1-2 s after the first
        failure and 2-4 s after the second."""
        job = make_job(task="test.fail", payload="p", max_attempts=3)
        for attempt, (low, high) in enumerate([(1, 2), (2, 4)], start=1):
            drain()  # the attempt fails; the retry waits for its backoff
            job.refresh_from_db()
            assert (job.status, job.attempts) == (Status.QUEUED, attempt)
            assert job.error == "ValueError: failed on 'p'" and "Traceback" in job.traceback
            failed_at = job.history.get(number=attempt).finished_at
            assert job.updated_at == failed_at
            wait = (job.run_after - failed_at).total_seconds()
            assert low <= wait <= high, wait
            Job.objects.filter(pk=job.pk).update(run_after=None)
        drain()
        job.refresh_from_db()
        assert (job.status, job.attempts, job.run_after) == (Status.FAILED, 3, None)
        assert list(job.history.values_list("outcome", flat=True)) == ["failed"] * 3

    def test_permanent_failure_and_unserialisable_results_fail_at_once(self, make_job):
        permanent = make_job(task="test.permanent", max_attempts=5)
        odd = make_job(task="test.unserialisable", max_attempts=1)
        drain()
        assert status_of(permanent) == Status.FAILED
        assert "TypeError" in Job.objects.get(pk=odd.pk).error

    def test_serves_only_its_queues(self, make_job):
        mine, other = make_job(queue="mine"), make_job(queue="other")
        drain(queues=["mine"])
        assert (status_of(mine), status_of(other)) == (Status.DONE, Status.QUEUED)

    def test_max_jobs_stops_and_hands_back_the_rest(self, make_job):
        for _ in range(4):
            make_job()
        assert drain(max_jobs=3, batch=10) == 3
        assert Job.objects.filter(status=Status.QUEUED, attempts=0).count() == 1
        assert not Job.objects.filter(status=Status.PROCESSING).exists()

    def test_timeout_kills_a_spinning_task_and_the_worker_goes_on(self, make_job):
        spinner = make_job(task="test.spin", timeout=1, max_attempts=1)
        after = make_job(task="echo", payload="next", priority=-1)
        started = time.monotonic()
        drain()
        assert time.monotonic() - started < 10
        spinner.refresh_from_db()
        assert spinner.status == Status.FAILED and "timed out" in spinner.error
        assert spinner.history.get().outcome == Outcome.TIMED_OUT
        assert Job.objects.get(pk=after.pk).result == "next"

    def test_registers_itself_while_running(self, make_job):
        seen = []

        class Spy(Worker):
            def _step(self):
                seen.extend(WorkerRow.objects.values_list("pk", flat=True))
                return super()._step()

        make_job()
        Spy(burst=True, install_signal_handlers=False, worker_id="spy-1").run()
        assert "spy-1" in seen
        assert not WorkerRow.objects.exists()  # removed on clean exit


def make_sleeper(make_job, tmp_path, seconds, **options):
    marker = tmp_path / "started"
    job = make_job(
        task="test.sleep", payload={"seconds": seconds, "marker": str(marker)}, **options
    )
    return job, marker


@pytest.mark.slow
class TestWorkerProcesses:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_first_signal_lets_the_running_job_finish_and_exits_0(
        self, processes, make_job, tmp_path, signum
    ):
        job, marker = make_sleeper(make_job, tmp_path, 1.5)
        queued = make_job(task="echo", priority=-10)
        worker = processes.worker()
        wait_for(marker.exists)
        worker.send_signal(signum)
        assert worker.wait(timeout=30) == 0, processes.output(worker)
        assert status_of(job) == Status.DONE
        assert status_of(queued) == Status.QUEUED  # not started, handed back
        assert not Job.objects.filter(status=Status.PROCESSING).exists()
        assert not WorkerRow.objects.exists()

    def test_sigterm_past_the_shutdown_timeout_requeues_the_job(
        self, processes, make_job, tmp_path
    ):
        job, marker = make_sleeper(make_job, tmp_path, 60)
        worker = processes.worker("--shutdown-timeout", "0.5")
        wait_for(marker.exists)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        job.refresh_from_db()
        assert (job.status, job.attempts) == (Status.QUEUED, 1)
        (attempt,) = job.history.all()  # the counted attempt is in the history
        assert (attempt.number, attempt.outcome) == (1, Outcome.RELEASED)
        assert attempt.error == "stopped by its worker before its outcome was recorded"

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            (signal.SIGTERM, signal.SIGTERM),
            (signal.SIGINT, signal.SIGINT),
            (signal.SIGTERM, signal.SIGINT),
        ],
    )
    def test_a_second_signal_stops_at_once_and_exits_1(
        self, processes, make_job, tmp_path, first, second
    ):
        """README: a second signal during the graceful stop kills the running job at once
        (back in the queue, its attempt counted) and exits 1; nothing is left processing.
        The job would run a minute and the shutdown timeout is 30 s: only the second
        signal can end it within 20 s."""
        job, marker = make_sleeper(make_job, tmp_path, 60)
        worker = processes.worker()
        wait_for(marker.exists)
        worker.send_signal(first)
        wait_for(lambda: f"signal={first.value} stopping" in processes.output(worker))
        assert worker.poll() is None  # still waiting for the job
        worker.send_signal(second)
        assert worker.wait(timeout=20) == 1, processes.output(worker)
        assert f"signal={second.value} stopping now" in processes.output(worker)
        job.refresh_from_db()
        assert (job.status, job.attempts, job.worker_id) == (Status.QUEUED, 1, None)
        assert not Job.objects.filter(status=Status.PROCESSING).exists()
        assert not WorkerRow.objects.exists()

    def test_concurrency_runs_that_many_jobs_at_once(self, processes, make_job, tmp_path):
        """--concurrency 3: three jobs run at the same time, each in its own executor.
        Each task records its start and waits for a gate that opens only once all three
        have started: one at a time they could never all start."""
        gate = tmp_path / "gate"
        markers = [tmp_path / f"started-{n}" for n in range(3)]
        jobs = [
            make_job(task="test.gate", payload={"marker": str(m), "gate": str(gate)})
            for m in markers
        ]
        processes.worker("--concurrency", "3")
        wait_for(lambda: all(m.exists() for m in markers))
        started = [m.read_text().split() for m in markers]
        gate.write_text("open")
        done = Job.objects.filter(pk__in=[j.pk for j in jobs], status=Status.DONE)
        wait_for(lambda: done.count() == 3)
        assert len({pid for pid, _ in started}) == 3  # three executor processes
        # Every task began before any of them ended: all three ran at once.
        last_start = max(float(at) for _, at in started)
        assert last_start < min(job.finished_at.timestamp() for job in done)

    def test_max_jobs_per_child_replaces_the_executor_child(self, processes, make_job, tmp_path):
        """--max-jobs-per-child 2: one executor's child runs two jobs, then a fresh child
        (a new process) runs the next two, and so on; each job runs once."""
        out = tmp_path / "pids"
        jobs = [
            make_job(task="test.pid", payload={"path": str(out), "line": n}, priority=-n)
            for n in range(6)
        ]
        worker = processes.worker("--once", "--max-jobs-per-child", "2")
        assert worker.wait(timeout=60) == 0, processes.output(worker)
        ran = [line.split() for line in out.read_text().splitlines()]
        assert [int(line) for line, _ in ran] == list(range(6))  # in claim order, once each
        pids = [pid for _, pid in ran]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5], pids
        assert len(set(pids)) == 3 and str(worker.pid) not in pids
        done = Job.objects.filter(pk__in=[j.pk for j in jobs], status=Status.DONE, attempts=1)
        assert done.count() == 6

    def test_cancel_stops_a_running_job_and_the_worker_goes_on(self, processes, make_job, tmp_path):
        job, marker = make_sleeper(make_job, tmp_path, 60)
        processes.worker(env={"JOBS_LEASE_SECONDS": "1"})
        wait_for(marker.exists)
        lifecycle.cancel(job_id=job.pk)
        wait_for(lambda: JobAttempt.objects.filter(job=job, outcome=Outcome.CANCELLED).exists())
        later = make_job(task="echo", payload="after")
        wait_for(lambda: status_of(later) == Status.DONE)
        assert status_of(job) == Status.CANCELLED

    @pytest.mark.parametrize("status", [Status.DONE, Status.FAILED, Status.QUEUED])
    def test_a_manual_move_away_from_processing_stops_the_running_task(
        self, processes, make_job, tmp_path, status
    ):
        """Setting a running job done, failed or queued by hand (PATCH /status, the admin)
        takes it from its holder: the worker stops the task at its next heartbeat and
        goes on with other work (it has one executor, so the next job proves it)."""
        marker = tmp_path / "m"
        job = make_job(task="test.slow_once", payload={"marker": str(marker), "seconds": 60})
        worker = processes.worker(env={"JOBS_LEASE_SECONDS": "1"})
        wait_for(marker.exists)
        lifecycle.set_status(job_id=job.pk, status=status)
        later = make_job(task="echo", payload="after", priority=10)
        wait_for(lambda: status_of(later) == Status.DONE)
        assert "no longer held" in processes.output(worker)
        job.refresh_from_db()
        if status == Status.QUEUED:  # back in the queue: it runs again, as attempt 2
            wait_for(lambda: status_of(job) == Status.DONE)
            job.refresh_from_db()
            assert (job.result, job.attempts) == ("second", 2)
        else:
            assert (job.status, job.result, job.attempts) == (status, None, 1)

    def test_a_job_cancelled_in_an_executors_hand_never_starts(self, processes, make_job, tmp_path):
        """With --batch, a job cancelled while it waits behind a running one is skipped:
        its task never runs, and the executor goes on with the next job."""
        marker, gate, runs = tmp_path / "m", tmp_path / "gate", tmp_path / "runs"
        first = make_job(task="test.gate", payload={"marker": str(marker), "gate": str(gate)})
        waiting = make_job(task="test.append", payload={"path": str(runs), "line": 1})
        # Kept in hand behind the running job, not handed back to the queue.
        env = {"JOBS_LEASE_SECONDS": "1", "JOBS_HAND_BACK_AFTER": "60"}
        processes.worker("--batch", "2", env=env)
        wait_for(marker.exists)
        assert status_of(waiting) == Status.PROCESSING  # claimed with the first
        cancelled_at = timezone.now()
        lifecycle.cancel(job_id=waiting.pk)
        # By the second heartbeat after the cancel, the first has told the executor.
        beat = wait_for(lambda: WorkerRow.objects.filter(last_heartbeat_at__gt=cancelled_at))
        after = beat.get().last_heartbeat_at
        wait_for(lambda: WorkerRow.objects.filter(last_heartbeat_at__gt=after).exists())
        gate.write_text("open")
        later = make_job(task="echo", payload="after")
        wait_for(lambda: status_of(later) == Status.DONE)
        assert (status_of(first), status_of(waiting)) == (Status.DONE, Status.CANCELLED)
        assert not runs.exists()

    def test_a_long_job_does_not_hold_the_quick_ones_behind_it(self, processes, make_job, tmp_path):
        """One executor claims a long job and the 50 quick ones behind it in one batch
        (runworker's defaults); once the long one has run a moment, the quick ones go
        back to the queue, and a second worker runs them all while it still runs. No
        job reads as started before its task began."""
        marker, gate, stamps = tmp_path / "m", tmp_path / "gate", tmp_path / "stamps"
        long = make_job(
            task="test.gate", payload={"marker": str(marker), "gate": str(gate)}, priority=1
        )
        quick = [
            make_job(task="test.stamp", payload={"path": str(stamps), "line": i}) for i in range(50)
        ]
        first = processes.worker("--worker-id", "first")
        wait_for(marker.exists)
        began_long = marker.stat().st_mtime
        # Taken back from the executor's hand: only the long job is still held.
        held = Job.objects.filter(worker_id="first", status=Status.PROCESSING)
        wait_for(lambda: list(held.values_list("pk", flat=True)) == [long.pk])
        processes.worker("--worker-id", "second")
        done = Job.objects.filter(pk__in=[j.pk for j in quick], status=Status.DONE)
        wait_for(lambda: done.count() == 50)
        assert status_of(long) == Status.PROCESSING  # all 50 ran while it ran
        gate.write_text("open")
        assert set(done.values_list("worker_id", flat=True)) == {"second"}
        assert set(done.values_list("attempts", flat=True)) == {1}  # handed back unstarted
        released = processes.output(first).count("transition=release")
        assert released == 50, processes.output(first)
        wait_for(lambda: status_of(long) == Status.DONE)
        long.refresh_from_db()
        assert long.worker_id == "first"
        # (A file's mtime comes from the kernel's coarse clock: a few ms of slack.)
        assert began_long - 0.5 <= long.started_at.timestamp() <= began_long + 0.02
        began = dict(line.split() for line in stamps.read_text().splitlines())
        assert len(began) == 50
        for job in done:
            task_began = float(began[str(job.payload["line"])])
            assert task_began - 0.5 <= job.started_at.timestamp() <= task_began

    def test_quick_successes_are_recorded_while_a_long_job_after_them_runs(
        self, processes, make_job, tmp_path
    ):
        """Successes recorded in groups never wait for the end of a long job that
        follows them in the executor's hand."""
        marker, gate = tmp_path / "m", tmp_path / "gate"
        quick = [make_job(task="echo", payload=i, priority=2) for i in range(3)]
        long = make_job(
            task="test.gate", payload={"marker": str(marker), "gate": str(gate)}, priority=1
        )
        processes.worker()
        wait_for(marker.exists)
        done = Job.objects.filter(pk__in=[job.pk for job in quick], status=Status.DONE)
        wait_for(lambda: done.count() == 3)
        assert status_of(long) == Status.PROCESSING
        assert sorted(done.values_list("result", flat=True)) == [0, 1, 2]
        gate.write_text("open")
        wait_for(lambda: status_of(long) == Status.DONE)

    def test_no_job_is_held_behind_a_long_one_in_a_backlog(self, processes, make_job, tmp_path):
        """In a backlog the worker claims the next batch while its executor runs the
        last: those jobs, too, go back to the queue once a long job has started."""
        marker, gate = tmp_path / "m", tmp_path / "gate"
        lifecycle.enqueue_many([{"task": "noop", "priority": 2} for _ in range(150)])
        long = make_job(
            task="test.gate", payload={"marker": str(marker), "gate": str(gate)}, priority=1
        )
        quick = lifecycle.enqueue_many([{"task": "echo", "payload": i} for i in range(150)])
        processes.worker("--worker-id", "first")
        wait_for(marker.exists)
        held = Job.objects.filter(worker_id="first", status=Status.PROCESSING)
        wait_for(lambda: list(held.values_list("pk", flat=True)) == [long.pk])
        processes.worker("--worker-id", "second")
        done = Job.objects.filter(pk__in=[job.pk for job in quick], status=Status.DONE)
        wait_for(lambda: done.count() == 150)
        assert status_of(long) == Status.PROCESSING  # all ran while it ran
        assert set(done.values_list("worker_id", flat=True)) == {"second"}
        gate.write_text("open")
        wait_for(lambda: status_of(long) == Status.DONE)
        assert not Job.objects.exclude(status=Status.DONE).exists()
        assert set(Job.objects.values_list("attempts", flat=True)) == {1}

    def test_kill_9_mid_job_is_recovered_and_completed_once(self, processes, make_job, tmp_path):
        env = {"JOBS_LEASE_SECONDS": "1"}
        job = make_job(
            task="test.slow_once", payload={"marker": str(tmp_path / "m"), "seconds": 60}
        )
        first = processes.worker(env=env)
        wait_for((tmp_path / "m").exists)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        processes.worker(env=env)
        wait_for(lambda: status_of(job) == Status.DONE)
        recovery = time.monotonic() - killed_at
        job.refresh_from_db()
        assert job.result == "second" and job.attempts == 2
        assert list(job.history.values_list("outcome", flat=True)) == [Outcome.LOST]
        assert not Job.objects.filter(status=Status.PROCESSING).exists()
        print(f"recovered and finished {recovery:.2f}s after kill -9 (lease 1s)")  # noqa: T201

    def test_a_paused_worker_cannot_overwrite_the_newer_attempt(
        self, processes, make_job, tmp_path
    ):
        """A worker frozen mid-job (SIGSTOP: a VM pause) loses the job to recovery and
        another worker finishes it. Resumed while its task still runs (it would run a
        minute), it finds at its next heartbeat that it lost the job and stops the task:
        its attempt can never land. Both workers then stop cleanly."""
        env = {"JOBS_LEASE_SECONDS": "1"}
        marker = tmp_path / "m"
        job = make_job(task="test.slow_once", payload={"marker": str(marker), "seconds": 60})
        paused = processes.worker("--worker-id", "paused", env=env)
        wait_for(marker.exists)
        os.killpg(paused.pid, signal.SIGSTOP)  # the worker and its executors: a frozen host
        rescuer = processes.worker("--worker-id", "rescuer", env=env)
        wait_for(lambda: status_of(job) == Status.DONE)
        rescuer.send_signal(signal.SIGTERM)
        assert rescuer.wait(timeout=30) == 0, processes.output(rescuer)
        os.killpg(paused.pid, signal.SIGCONT)
        wait_for(lambda: "no longer held" in processes.output(paused))
        paused.send_signal(signal.SIGTERM)
        assert paused.wait(timeout=30) == 0, processes.output(paused)
        output = processes.output(paused)
        assert f"job={job.pk} no longer held" in output and "outcome=discarded" not in output
        job.refresh_from_db()
        assert (job.status, job.result, job.attempts, job.worker_id) == (
            Status.DONE,
            "second",
            2,
            "rescuer",
        )
        assert list(job.history.values_list("worker_id", "outcome")) == [("paused", Outcome.LOST)]
        assert not WorkerRow.objects.exists()

    def test_four_workers_run_each_of_2000_jobs_exactly_once(self, processes, tmp_path):
        out = tmp_path / "runs"
        lifecycle.enqueue_many(
            [{"task": "test.append", "payload": {"path": str(out), "line": i}} for i in range(2000)]
        )
        workers = [processes.worker("--once", "--batch", "20") for _ in range(4)]
        for worker in workers:
            assert worker.wait(timeout=240) == 0, processes.output(worker)
        lines = out.read_text().split()
        assert len(lines) == 2000 and len(set(lines)) == 2000
        assert Job.objects.filter(status=Status.DONE, attempts=1).count() == 2000


@pytest.mark.slow
class TestPostgresWakeup:
    @pytest.fixture(autouse=True)
    def _postgres_only(self, transactional_db):
        from django.db import connection

        if connection.vendor != "postgresql":
            pytest.skip("LISTEN/NOTIFY is PostgreSQL's")

    def test_notify_wakes_an_idle_worker_long_before_its_poll(self, processes, make_job):
        worker = processes.worker("--poll-interval", "600")
        wait_for(lambda: "listening" in processes.output(worker))
        job = make_job(task="echo", payload="wake")
        # Polling would take ten minutes; only the notification can run it this soon.
        wait_for(lambda: status_of(job) == Status.DONE, timeout=30)

    def test_jobs_put_back_in_the_queue_wake_idle_workers(self, make_job):
        """A job released (handed back from an executor's hand, or by a stopping
        worker) is announced like a new one, at commit."""
        import select

        from jobs.notify import Listener

        make_job(task="echo", queue="woken")
        [claimed] = lifecycle.claim(worker_id="w", limit=1)
        listener = Listener()
        try:
            fd = listener.fileno()
            assert fd is not None and listener.drain() == []
            assert lifecycle.release(jobs=[claimed], worker_id="w") == 1
            select.select([fd], [], [], 10)
            assert listener.drain() == ["woken"]
        finally:
            listener.close()
        assert (claimed.status, claimed.attempts) == (Status.QUEUED, 0)


@pytest.mark.slow
class TestServerRestarts:
    """A database server drops connections (PostgreSQL's pg_terminate_backend,
    MariaDB/MySQL's KILL) or is not there yet; SQLite has no server."""

    @pytest.fixture(autouse=True)
    def _server_only(self, transactional_db):
        from django.db import connection

        if connection.vendor == "sqlite":
            pytest.skip("SQLite has no server to drop connections")

    def test_sigterm_after_its_connections_died_unnoticed_exits_0(
        self, processes, make_job, tmp_path
    ):
        """A worker frozen while its connections die (a database restart) and then told
        to stop reconnects, hands its jobs back and exits 0."""

        job, marker = make_sleeper(make_job, tmp_path, 60)
        waiting = make_job(task="echo", payload="in the executor's hand", priority=-1)
        env = {"JOBS_LEASE_SECONDS": "1"}
        worker = processes.worker("--batch", "2", "--shutdown-timeout", "1", env=env)
        wait_for(marker.exists)
        os.killpg(worker.pid, signal.SIGSTOP)
        assert kill_other_connections() >= 1
        # Frozen past its next heartbeat, so that is the first thing it does after waking.
        row = WorkerRow.objects.get()
        wait_for(lambda: timezone.now() - row.last_heartbeat_at > timezone.timedelta(seconds=1))
        worker.send_signal(signal.SIGTERM)  # delivered the moment it wakes
        os.killpg(worker.pid, signal.SIGCONT)
        assert worker.wait(timeout=60) == 0, processes.output(worker)
        job.refresh_from_db()
        assert (job.status, job.attempts, job.worker_id) == (Status.QUEUED, 1, None)
        waiting.refresh_from_db()  # never started: handed back with its attempt
        assert (waiting.status, waiting.attempts) == (Status.QUEUED, 0)
        assert not WorkerRow.objects.exists()

    def test_a_worker_started_while_the_database_is_down_waits_for_it(self, processes, make_job):
        """Started while nothing answers at the database's address, a worker retries with
        backoff, logging each retry, and starts serving once the database answers (or
        exits 0 at once if told to stop first)."""
        from django.db import connection

        s = connection.settings_dict
        port = free_port()
        scheme, default_port = (
            ("mysql", 3306) if connection.vendor == "mysql" else ("postgres", 5432)
        )
        url = f"{scheme}://{s['USER']}@127.0.0.1:{port}/{s['NAME']}"
        worker, stopped = (processes.worker(env={"DATABASE_URL": url}) for _ in range(2))
        for proc in (worker, stopped):
            wait_for(lambda proc=proc: processes.output(proc).count("database unavailable") >= 2)
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(timeout=30) == 0, processes.output(stopped)
        assert worker.poll() is None and not WorkerRow.objects.exists()
        with TcpProxy(port, (s["HOST"] or "127.0.0.1", int(s["PORT"] or default_port))):
            job = make_job(task="echo", payload="after the outage")
            wait_for(lambda: status_of(job) == Status.DONE, timeout=60)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0, processes.output(worker)

    @pytest.mark.parametrize("max_age", ["600", "0"])  # kept connections reconnect either way
    def test_worker_survives_its_connections_being_killed(self, processes, make_job, max_age):
        jobs = [make_job(task="test.sleep", payload={"seconds": 0.05}) for _ in range(40)]
        worker = processes.worker("--batch", "2", env={"DJANGO_CONN_MAX_AGE": max_age})
        wait_for(lambda: Job.objects.filter(status=Status.DONE).count() >= 5)
        assert kill_other_connections() >= 1
        wait_for(
            lambda: Job.objects.filter(status=Status.DONE).exclude(task="jobs.purge").count() == 40,
            timeout=60,
        )
        assert not Job.objects.filter(status=Status.PROCESSING).exists()
        assert worker.poll() is None  # still serving
        later = make_job(task="echo", payload="after")
        wait_for(lambda: status_of(later) == Status.DONE, timeout=30)
        assert len(jobs) == 40


@pytest.mark.django_db(transaction=True)
def test_a_timeout_in_a_batch_blames_the_job_that_overran(make_job):
    """Quick jobs handed over with a spinning one all finish; only the spinner is blamed.

    (Quick successes not yet recorded when the executor is killed run again.)"""
    quick = [make_job(task="echo", payload=i, priority=10) for i in range(3)]
    spinner = make_job(task="test.spin", timeout=1, max_attempts=1, priority=5)
    after = make_job(task="echo", payload="after", priority=0)
    drain(batch=10)
    spinner.refresh_from_db()
    assert spinner.status == Status.FAILED and "timed out" in spinner.error
    assert [Job.objects.get(pk=j.pk).status for j in [*quick, after]] == [Status.DONE] * 4
    assert list(JobAttempt.objects.values_list("job_id", "outcome")) == [
        (spinner.pk, Outcome.TIMED_OUT)
    ]
