"""Compatibility suite: ``jobs.backends.JobsBackend`` behind Django's Tasks API."""

import importlib
import logging
import pickle
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from jobs import lifecycle, runner, tasks
from jobs.backends import JobsBackend, enqueue_on_commit
from jobs.backends import task as jobs_task
from jobs.backends.backend import load_task
from jobs.models import Job, Status
from tests import django_tasks as dt
from tests import portable_tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def drain(worker_id: str = "w-test", queues: list[str] | None = None) -> int:
    """Run every due job in this process, as a worker would; return how many ran."""
    ran = 0
    while claimed := lifecycle.claim(worker_id=worker_id, queues=queues, limit=10):
        for job in claimed:
            runner.execute(job, worker_id=worker_id)
            ran += 1
    return ran


class Received:
    """Collect the (sender, status) of every signal received while connected."""

    def __init__(self, signal: Any) -> None:
        self.signal, self.calls = signal, []

    def __call__(self, sender: Any, task_result: Any, **kwargs: Any) -> None:
        self.calls.append((sender, task_result.status, task_result.id))

    def __enter__(self) -> "Received":
        self.signal.connect(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.signal.disconnect(self)


# -- enqueue and get_result ----------------------------------------------------------------


def test_settings_use_the_jobs_backend():
    assert isinstance(task_backends["default"], JobsBackend)
    assert all(
        getattr(JobsBackend, flag)
        for flag in ("supports_defer", "supports_async_task", "supports_get_result")
    )


def test_enqueue_returns_a_ready_result_and_a_job_row():
    with Received(task_enqueued) as enqueued:
        result = dt.add.enqueue(1, b=3)
    assert isinstance(result.id, str) and len(result.id) < 64
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.attempts) == ([1], {"b": 3}, 0)
    assert result.enqueued_at is not None
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None,) * 3
    assert result.task == dt.add and result.backend == "default"
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    assert enqueued.calls == [(JobsBackend, TaskResultStatus.READY, result.id)]
    job = Job.objects.get(pk=result.id)
    assert job.task == "tests.django_tasks.add" and job.status == Status.QUEUED
    assert job.payload == {"args": [1], "kwargs": {"b": 3}, "backend": "default"}
    assert job.max_attempts == 1  # Django's semantics unless the task asks for retries


def test_get_result_round_trips_sync_and_async():
    result = dt.add.using(priority=5, queue_name="mail").enqueue(2, 2)
    assert default_task_backend.get_result(result.id) == result
    assert async_to_sync(default_task_backend.aget_result)(result.id) == result
    assert dt.add.get_result(result.id) == result
    assert Job.objects.get(pk=result.id).priority == 5


@pytest.mark.parametrize("result_id", ["00000000-0000-0000-0000-000000000000", "nope", "", "1"])
def test_unknown_or_malformed_ids_do_not_exist(result_id):
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)


def test_a_registered_tasks_job_is_a_task_result_of_its_function(make_job):
    """Its payload is the one argument, even one shaped like a django.tasks payload."""
    job = make_job(task="echo", payload={"args": [], "kwargs": {}, "backend": "nope"})
    result = default_task_backend.get_result(str(job.pk))
    assert (result.args, result.kwargs) == ([job.payload], {})
    assert (result.task.name, result.backend) == ("echo", "default")


def test_get_result_of_another_task_is_a_mismatch():
    result = dt.add.enqueue(1)
    with pytest.raises(TaskResultMismatch):
        dt.fail.get_result(result.id)


def test_refresh_picks_up_the_outcome():
    result = dt.add.enqueue(20, b=22)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    other = dt.add.enqueue(1, b=1)
    drain()
    async_to_sync(other.arefresh)()
    assert other.return_value == 2


# -- running ------------------------------------------------------------------------------


def test_success_records_timestamps_worker_and_return_value(caplog):
    caplog.set_level(logging.INFO, logger="django.tasks")
    with Received(task_started) as started, Received(task_finished) as finished:
        result = dt.add.enqueue(1, b=2)
        drain("w-1")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.worker_ids == ["w-1"] and result.attempts == 1 and result.errors == []
    assert started.calls == [(JobsBackend, TaskResultStatus.RUNNING, result.id)]
    assert finished.calls == [(JobsBackend, TaskResultStatus.SUCCESSFUL, result.id)]
    assert "state=RUNNING" in caplog.text and "state=SUCCESSFUL" in caplog.text


def test_failure_records_the_error_class_and_traceback(caplog):
    with Received(task_finished) as finished:
        result = dt.fail.enqueue("boom")
        drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.is_finished
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class is ValueError
    assert error.traceback.startswith("Traceback") and error.traceback.endswith(
        "ValueError: boom\n"
    )
    assert finished.calls == [(JobsBackend, TaskResultStatus.FAILED, result.id)]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_nested_exceptions_keep_their_chain():
    result = dt.fail_nested.enqueue()
    drain()
    [error] = dt.fail_nested.get_result(result.id).errors
    assert error.exception_class is RuntimeError
    assert "KeyError: 'inner'" in error.traceback and "RuntimeError: outer" in error.traceback


def test_system_exit_is_recorded_not_raised():
    result = dt.exit_task.enqueue()
    drain()
    assert dt.exit_task.get_result(result.id).errors[0].exception_class is SystemExit


def test_unserialisable_return_value_fails_with_type_error():
    result = dt.unserialisable.enqueue()
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError


def test_takes_context_sees_the_running_result():
    result = dt.with_context.enqueue("v")
    drain("w-ctx")
    value = dt.with_context.get_result(result.id).return_value
    assert value == {
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "worker_ids": ["w-ctx"],
        "value": "v",
    }


def test_async_tasks_run_and_enqueue():
    result = async_to_sync(dt.async_add.aenqueue)(2, 3)
    drain()
    assert async_to_sync(dt.async_add.aget_result)(result.id).return_value == 5


def test_retries_appear_as_attempts_and_errors(tmp_path):
    result = dt.flaky.enqueue(str(tmp_path / "count"))
    drain("w-a")
    result.refresh()
    assert result.status == TaskResultStatus.READY  # retry scheduled after a backoff
    assert result.worker_ids == ["w-a"] and len(result.errors) == 1
    Job.objects.filter(pk=result.id).update(run_after=None)
    drain("w-b")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "ok"
    assert result.worker_ids == ["w-a", "w-b"] and result.attempts == 2
    assert result.errors[0].exception_class is ConnectionError
    assert result.started_at < result.last_attempted_at


def test_lost_and_cancelled_attempts_are_errors():
    lost = dt.add.enqueue(1)
    [job] = lifecycle.claim(worker_id="gone")
    lifecycle.recover(now=timezone.now() + timedelta(days=1))
    lost.refresh()
    assert lost.status == TaskResultStatus.FAILED and lost.worker_ids == ["gone"]
    assert lost.errors[0].exception_class_path == "jobs.exceptions.WorkerLost"
    cancelled = dt.add.enqueue(2)
    lifecycle.cancel(job_id=cancelled.id)
    cancelled.refresh()
    assert cancelled.status == TaskResultStatus.FAILED
    assert cancelled.errors[0].exception_class_path == "jobs.exceptions.JobCancelled"
    assert job.task == "tests.django_tasks.add"


def test_progress_is_recorded_for_the_running_job():
    result = dt.progress.enqueue(4)
    drain()
    job = Job.objects.get(pk=result.id)
    assert (job.progress, job.progress_message) == (100, "step 4 of 4")
    assert tasks.report_progress(50) is False  # no job runs here
    result = dt.async_progress.enqueue()
    drain()
    job = Job.objects.get(pk=result.id)
    assert (job.progress, job.progress_message, job.result) == (30, "from a coroutine", True)


# -- validation, ordering, deferral, queues ------------------------------------------------


@pytest.mark.parametrize("priority", [-101, 101, 3.1])
def test_priority_out_of_range_is_invalid(priority):
    with pytest.raises(InvalidTask):
        dt.add.using(priority=priority)


@pytest.mark.parametrize("priority", [-100, 0, 100])
def test_priority_in_range_is_accepted(priority):
    assert dt.add.using(priority=priority).enqueue(1).task.priority == priority


def test_queue_validation_follows_settings(settings):
    settings.TASKS = {
        "default": {"BACKEND": "jobs.backends.JobsBackend", "QUEUES": ["default", "mail"]}
    }
    assert dt.add.using(queue_name="mail").enqueue(1).task.queue_name == "mail"
    with pytest.raises(InvalidTask, match="Queue 'other' is not valid"):
        dt.add.using(queue_name="other")
    queued = dt.add.using(queue_name="mail")
    settings.TASKS = {"default": {"BACKEND": "jobs.backends.JobsBackend"}}
    with pytest.raises(InvalidTask):  # validated again at enqueue
        queued.enqueue(1)


def test_invalid_definitions_are_refused():
    with pytest.raises(InvalidTask, match="aware"):
        dt.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(TypeError):
        dt.add.enqueue(datetime.now(tz=timezone.UTC))
    with pytest.raises(TypeError, match="run_after"):
        task(run_after=timezone.now())(dt.add.func)
    with pytest.raises(InvalidTask, match="module level"):

        @task
        def nested() -> None: ...

    with pytest.raises(InvalidTask, match="context"):
        task(takes_context=True)(dt.add.func)
    with pytest.raises(InvalidTask, match="max_attempts"):
        task(max_attempts=0)(dt.add.func)


def test_only_tasks_on_this_backend_are_resolved(settings):
    assert load_task("tests.django_tasks.add") is dt.add
    for path in ["os.system", "tests.django_tasks.nothing", "json.dumps", "x", "a..b", ""]:
        assert load_task(path) is None
    assert load_task("antigravity.fly") is None and "antigravity" not in sys.modules
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert load_task("tests.django_tasks.add") is None


def test_a_row_naming_an_arbitrary_path_fails_without_running_it():
    job = Job.objects.create(task="os.system", payload={"args": ["touch /tmp/x"], "kwargs": {}})
    assert drain() == 1
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.error.startswith("jobs.exceptions.UnknownTask")


def test_priority_then_due_time_then_fifo(tmp_path):
    out = str(tmp_path / "order")
    dt.record.enqueue(out, "low")
    dt.record.enqueue(out, "fifo-1")
    dt.record.using(priority=10).enqueue(out, "high")
    dt.record.enqueue(out, "fifo-2")
    Job.objects.filter(payload__args__1="low").update(priority=-5)
    drain()
    assert Path(out).read_text().split() == ["high", "fifo-1", "fifo-2", "low"]


def test_run_after_defers_until_due():
    later = timezone.now() + timedelta(hours=1)
    result = dt.add.using(run_after=later).enqueue(1)
    assert result.task.run_after == later
    assert drain() == 0
    Job.objects.filter(pk=result.id).update(run_after=timezone.now())
    assert drain() == 1
    assert dt.add.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_workers_serve_only_their_queues():
    result = dt.on_mail_queue.enqueue()
    assert drain(queues=["default"]) == 0
    assert drain(queues=["mail"]) == 1
    assert dt.on_mail_queue.get_result(result.id).return_value == "mail"


# -- transactions, pickling, checks --------------------------------------------------------


def test_enqueue_commits_and_rolls_back_with_the_callers_transaction():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = dt.add.enqueue(1)
        raise RuntimeError("abort")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(rolled_back.id)
    with transaction.atomic():
        kept = dt.add.enqueue(2)
    assert default_task_backend.get_result(kept.id) == kept


@pytest.mark.django_db(transaction=True)
def test_workers_see_a_job_only_once_the_callers_transaction_commits():
    from django.db import connection, transaction

    def count_from_another_connection() -> int:
        counted: list[int] = []

        def count() -> None:
            counted.append(Job.objects.count())
            connection.close()

        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
        return counted[0]

    with transaction.atomic():
        dt.add.enqueue(1)
        lifecycle.enqueue(task="echo", payload="named jobs too")
        assert count_from_another_connection() == 0
    assert count_from_another_connection() == 2


def test_enqueue_on_commit_waits_for_the_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueue_on_commit(dt.add, 1, b=2)
        assert Job.objects.count() == 0
    for callback in callbacks:
        callback()
    assert Job.objects.get().payload["kwargs"] == {"b": 2}


def test_results_and_tasks_pickle():
    result = dt.flaky.enqueue("/nonexistent")
    assert pickle.loads(pickle.dumps(result)) == result  # noqa: S301
    restored = pickle.loads(pickle.dumps(dt.flaky))  # noqa: S301
    assert restored == dt.flaky and restored.max_attempts == 2
    assert Job.objects.get(pk=result.id).max_attempts == 2


def test_jobqueue_task_options_reach_the_job_and_run():
    result = portable_tasks.double.enqueue(21)
    job = Job.objects.get(pk=result.id)
    assert (job.max_attempts, job.timeout) == (4, 5)
    assert drain() == 1
    assert portable_tasks.double.get_result(result.id).return_value == 42
    restored = pickle.loads(pickle.dumps(portable_tasks.double))  # noqa: S301
    assert restored == portable_tasks.double
    assert Job.objects.get(pk=restored.enqueue(1).id).max_attempts == 4


@pytest.mark.parametrize(
    ("backend", "status", "value"),
    [
        ("django.tasks.backends.immediate.ImmediateBackend", TaskResultStatus.SUCCESSFUL, 42),
        ("django.tasks.backends.dummy.DummyBackend", TaskResultStatus.READY, None),
    ],
)
def test_jobqueue_tasks_import_and_run_under_djangos_own_backends(settings, backend, status, value):
    """``@jobs.backends.task(max_attempts=..., timeout=...)`` keeps its options to itself."""
    original = settings.TASKS
    settings.TASKS = {"default": {"BACKEND": backend}}
    try:
        module = importlib.reload(portable_tasks)
        result = module.double.enqueue(21)
        assert result.status == status
        if value is not None:
            assert result.return_value == value
        assert not Job.objects.exists()
    finally:
        settings.TASKS = original
        importlib.reload(portable_tasks)


@pytest.mark.parametrize("options", [{"max_attempts": 0}, {"max_attempts": 101}, {"timeout": 0}])
def test_jobqueue_task_options_are_checked_under_any_backend(settings, options):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with pytest.raises(InvalidTask):
        jobs_task(**options)(dt.add.func)


def test_check_reports_a_missing_app(settings):
    """With the app installed the backend has nothing to report; without it, jobs.E001
    names the TASKS alias and says what to add."""
    backend = JobsBackend(alias="x", params={})
    assert backend.check() == []
    call_command("check")  # raises SystemCheckError on any error
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "jobs"]
    [error] = backend.check()
    assert (error.id, error.level, error.obj) == ("jobs.E001", checks.ERROR, "TASKS['x']")
    assert error.msg == "JobsBackend needs 'jobs' in INSTALLED_APPS."
    with pytest.raises(SystemCheckError, match=r"jobs\.E001"):
        call_command("check")


# -- through a real worker process ---------------------------------------------------------


@pytest.mark.slow
def test_success_and_failure_through_runworker(processes):
    ok = dt.add.enqueue(40, b=2)
    bad = dt.fail.enqueue("from a worker")
    worker = processes.worker("--once", "--worker-id", "w-proc")
    worker.wait(timeout=60)
    output = processes.output(worker)
    assert worker.returncode == 0, output
    ok.refresh()
    assert ok.status == TaskResultStatus.SUCCESSFUL and ok.return_value == 42
    assert ok.worker_ids == ["w-proc"]
    bad.refresh()
    assert bad.status == TaskResultStatus.FAILED and bad.worker_ids == ["w-proc"]
    assert bad.errors[0].exception_class is ValueError
    assert bad.errors[0].traceback.endswith("ValueError: from a worker\n")
    assert "state=FAILED" in output  # Django's own task_finished logging, in the worker


@pytest.mark.slow
def test_two_workers_run_each_task_exactly_once(processes, tmp_path):
    out = tmp_path / "runs"
    results = [dt.record.enqueue(str(out), f"t{i}") for i in range(20)]
    workers = [processes.worker("--once", "--worker-id", f"w{n}") for n in range(2)]
    for worker in workers:
        worker.wait(timeout=60)
        output = processes.output(worker)
        assert worker.returncode == 0, output
    assert sorted(out.read_text().split()) == sorted(f"t{i}" for i in range(20))
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL and len(result.worker_ids) == 1


@pytest.mark.slow
def test_a_long_running_worker_picks_up_new_tasks(processes):
    processes.worker("--worker-id", "w-live")
    result = dt.async_add.enqueue(1, 2)
    wait_for(lambda: Job.objects.filter(pk=result.id, status=Status.DONE).exists())
    assert dt.async_add.get_result(result.id).return_value == 3


@pytest.mark.slow
def test_a_task_waiting_in_an_executors_hand_is_not_running(processes, tmp_path):
    """With --batch, a task claimed beside a running one is READY, without started_at,
    until the executor starts it; started_at is then when it started, not the claim."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    first = dt.wait_for_file.enqueue(str(started), str(gate))
    second = dt.add.enqueue(1, b=2)
    # Kept in hand behind the running task (by default it goes back to the queue after
    # 50 ms, which a poll of the test could miss).
    env = {"JOBS_HAND_BACK_AFTER": "60"}
    processes.worker("--batch", "2", "--worker-id", "w-batch", env=env)
    wait_for(started.exists)
    assert Job.objects.get(pk=second.id).status == Status.PROCESSING  # claimed with the first
    waiting = dt.add.get_result(second.id)
    assert waiting.status == TaskResultStatus.READY
    assert (waiting.started_at, waiting.last_attempted_at, waiting.worker_ids) == (None, None, [])
    assert Job.objects.get(pk=second.id).started_at is None
    running = wait_for(lambda: (r := dt.wait_for_file.get_result(first.id)).started_at and r)
    assert running.status == TaskResultStatus.RUNNING and running.worker_ids == ["w-batch"]
    opened = timezone.now()
    gate.write_text("open")
    wait_for(lambda: Job.objects.filter(pk=second.id, status=Status.DONE).exists())
    second.refresh()
    assert second.status == TaskResultStatus.SUCCESSFUL and second.return_value == 3
    assert second.started_at >= opened and second.worker_ids == ["w-batch"]
    assert Job.objects.get(pk=first.id).started_at == running.started_at < opened


@pytest.mark.slow
def test_cancelling_a_running_task_sends_task_finished(processes, tmp_path):
    """The worker stops the cancelled attempt and sends task_finished (state FAILED)."""
    started = tmp_path / "started"
    result = dt.wait_for_file.enqueue(str(started), str(tmp_path / "never"))
    worker = processes.worker("--worker-id", "w-cancel", env={"JOBS_LEASE_SECONDS": "1"})
    wait_for(started.exists)
    lifecycle.cancel(job_id=result.id)
    finished = f"Task id={result.id} path={dt.wait_for_file.module_path} state=FAILED"
    wait_for(lambda: finished in processes.output(worker))
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "jobs.exceptions.JobCancelled"
