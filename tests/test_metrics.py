"""GET /metrics: Prometheus text, counters from every process, gauges from the database."""

import os
import signal
import tempfile
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import lifecycle
from jobs.models import Job
from tests.conftest import run_python, wait_for
from tests.helpers import free_port


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """Return every sample of ``GET /metrics`` as {(name, labels): value}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_multiprocess_mode_is_on_in_the_tests():
    from prometheus_client import values

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert values.ValueClass is not values.MutexValue


@pytest.mark.slow
def test_counts_and_gauges_after_a_known_mix_run_by_a_real_worker(client, processes):
    """Jobs enqueued here and run by a worker process add up on one page."""
    queue = f"m-{uuid.uuid4().hex[:8]}"
    for payload in ("x", "y"):
        lifecycle.enqueue(task="echo", payload=payload, queue=queue)
    lifecycle.enqueue(task="test.permanent", queue=queue)
    lifecycle.enqueue(task="test.fail", queue=queue, max_attempts=2)  # fails, then waits
    # A backoff of up to 30 years: the retry is never due during this run.
    backoff = {"JOBS_BACKOFF_BASE": "1e9", "JOBS_BACKOFF_MAX": "1e9"}
    worker = processes.worker("--once", "--queue", queue, env=backoff)
    assert worker.wait(timeout=60) == 0, processes.output(worker)

    samples = scrape(client)
    echo, permanent, flaky = (
        {"task": "echo", "queue": queue},
        {"task": "test.permanent", "queue": queue},
        {"task": "test.fail", "queue": queue},
    )
    assert sample(samples, "jobqueue_jobs_enqueued_total", **echo) == 2
    assert sample(samples, "jobqueue_attempts_total", **echo, outcome="done") == 2
    assert sample(samples, "jobqueue_attempts_total", **permanent, outcome="failed") == 1
    assert sample(samples, "jobqueue_attempts_total", **flaky, outcome="failed") == 1
    assert sample(samples, "jobqueue_jobs_finished_total", **echo, status="done") == 2
    assert sample(samples, "jobqueue_jobs_finished_total", **permanent, status="failed") == 1
    assert sample(samples, "jobqueue_jobs_finished_total", **flaky, status="failed") is None
    histogram = {**echo, "outcome": "done"}
    assert sample(samples, "jobqueue_attempt_duration_seconds_count", **histogram) == 2
    assert sample(samples, "jobqueue_attempt_duration_seconds_bucket", **histogram, le="+Inf") == 2

    assert sample(samples, "jobqueue_queue_jobs", queue=queue, status="queued") == 1
    assert sample(samples, "jobqueue_queue_jobs", queue=queue, status="processing") == 0
    recent = {"queue": queue, "window": "1m"}
    assert sample(samples, "jobqueue_queue_finished_recent", **recent, status="done") == 2
    assert sample(samples, "jobqueue_queue_finished_recent", **recent, status="failed") == 1
    assert sample(samples, "jobqueue_workers_alive") == 0  # the worker has exited
    assert sample(samples, "jobqueue_jobs_exact", status="done") == 1


@pytest.mark.slow
def test_live_workers_and_queue_depth_come_from_the_database(client, processes, make_job):
    queue = f"w-{uuid.uuid4().hex[:8]}"
    processes.worker("--queue", queue)
    wait_for(lambda: sample(scrape(client), "jobqueue_workers_alive") == 1)
    idle = make_job(task="echo", queue=f"{queue}-idle")
    Job.objects.filter(pk=idle.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    samples = scrape(client)
    assert sample(samples, "jobqueue_queue_jobs", queue=f"{queue}-idle", status="queued") == 1
    assert 119 <= sample(samples, "jobqueue_queue_lag_seconds", queue=f"{queue}-idle") < 180


@pytest.mark.slow
def test_without_a_multiprocess_directory_a_process_serves_its_own(processes):
    code = (
        "from jobs import lifecycle; from jobs.observability import metrics; "
        "lifecycle.enqueue(task='echo', queue='solo'); print(metrics.render()[0].decode())"
    )
    proc = processes.manage("shell", "-c", code, env={"PROMETHEUS_MULTIPROC_DIR": ""})
    assert proc.wait(timeout=60) == 0, processes.output(proc)
    output = processes.output(proc)
    assert 'jobqueue_jobs_enqueued_total{queue="solo",task="echo"} 1.0' in output
    assert "process_cpu_seconds_total" in output  # this process's own default metrics
    assert 'jobqueue_queue_jobs{queue="solo",status="queued"} 1.0' in output


@pytest.mark.django_db
def test_a_bulk_create_counts_every_job(api, client):
    """Counted per task and queue, however the jobs of one call are mixed."""
    queue, other = f"b-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    body = [{"task": "echo", "payload": i, "queue": queue} for i in range(4)]
    body += [{"task": "noop", "queue": queue}, {"task": "echo", "queue": other}] * 2
    assert api.post("/api/jobs", body, format="json").status_code == 201
    samples = scrape(client)
    assert sample(samples, "jobqueue_jobs_enqueued_total", task="echo", queue=queue) == 4
    assert sample(samples, "jobqueue_jobs_enqueued_total", task="noop", queue=queue) == 2
    assert sample(samples, "jobqueue_jobs_enqueued_total", task="echo", queue=other) == 2
    assert sample(samples, "jobqueue_queue_jobs", queue=queue, status="queued") == 6


@pytest.mark.django_db
def test_a_metrics_file_another_process_is_creating_is_no_error(api, client):
    """A process creating its metrics file leaves it empty for an instant; /metrics read
    it then and answered 500 (struct.error). An empty file holds no samples: skipped."""
    queue = f"e-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/jobs", {"task": "echo", "queue": queue}, format="json").status_code == 201
    empty = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "counter_999999999.db")
    open(empty, "wb").close()
    try:
        samples = scrape(client)
    finally:
        os.remove(empty)
    assert sample(samples, "jobqueue_jobs_enqueued_total", task="echo", queue=queue) == 1


@pytest.mark.django_db
class TestAccess:
    def test_open_without_a_token(self, client):
        assert client.get("/metrics").status_code == 200
        assert client.get("/metrics/").status_code == 200

    def test_a_token_is_required_once_set(self, client, settings):
        settings.JOBS_METRICS_TOKEN = "s3cret"
        missing = client.get("/metrics")
        assert missing.status_code == 401
        assert missing["WWW-Authenticate"].startswith("Bearer")
        assert missing.json()["code"] == "not_authenticated"  # the API's error shape
        assert "JOBS_METRICS_TOKEN" in missing.json()["detail"]
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "s3cret"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and b"jobqueue_jobs" in ok.content

    def test_disabled_answers_404(self, client, settings):
        settings.JOBS_METRICS_ENABLED = False
        settings.JOBS_METRICS_TOKEN = "s3cret"
        response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 404
        assert response.json() == {
            "detail": "Metrics are disabled (JOBS_METRICS_ENABLED).",
            "code": "not_found",
        }

    def test_disabled_from_the_environment(self, client, monkeypatch):
        monkeypatch.setenv("JOBS_METRICS_ENABLED", "false")
        assert client.get("/metrics").status_code == 404
        monkeypatch.setenv("JOBS_METRICS_ENABLED", "1")
        assert client.get("/metrics").status_code == 200


@pytest.mark.slow
def test_serve_adds_up_gunicorn_and_worker_processes(processes):
    """A job run by serve's worker shows in the counters that gunicorn serves."""
    port, queue = free_port(), f"s-{uuid.uuid4().hex[:8]}"
    env = {"PROMETHEUS_MULTIPROC_DIR": "", "JOBS_METRICS_TOKEN": "t0k3n"}
    serve = processes.manage("serve", "--port", str(port), "--web-workers", "2", env=env)
    job, _ = lifecycle.enqueue(task="echo", payload=1, queue=queue)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "done", timeout=60)

    def fetch(token: str) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.read().decode()

    page = fetch("t0k3n")
    assert f'jobqueue_attempts_total{{outcome="done",queue="{queue}",task="echo"}} 1.0' in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch("wrong")
    assert refused.value.code == 401
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0, processes.output(serve)
    directory = processes.output(serve).split("PROMETHEUS_MULTIPROC_DIR=")[1].split()[0]
    assert directory.startswith(tempfile.gettempdir()) and not os.path.exists(directory)


@pytest.mark.slow
def test_threads_of_one_process_share_the_instruments(tmp_path):
    """Threaded gunicorn workers record their first transitions at the same moment."""
    code = """
import threading
import django
django.setup()
from jobs.observability import metrics
barrier, errors = threading.Barrier(16), []
def record():
    barrier.wait()
    try:
        metrics.record_enqueued(task="t", queue="q")
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=record) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors or "ok")
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "jobqueue.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    done = run_python(code, env)
    assert done.stdout.strip() == "ok", done.stdout + done.stderr


NO_PROMETHEUS = """
import sys
sys.modules["prometheus_client"] = None  # as if the metrics extra were not installed
import django
django.setup()
from django.test import Client
from jobs import lifecycle, runner
job, _ = lifecycle.enqueue(task="echo", payload="x")
print(runner.run_now(job_id=job.pk).status)
response = Client().get("/metrics")
print(response.status_code, response["Content-Type"], response.content.decode())
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_without_prometheus_client_jobs_run_quietly_and_metrics_answers_501():
    """prometheus_client is an optional extra: without it no transition logs a traceback."""
    import json

    from tests.conftest import database_url

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "jobqueue.settings",
        "DATABASE_URL": database_url(),
    }
    done = run_python(NO_PROMETHEUS, env)
    assert done.returncode == 0, done.stderr
    status, answer = done.stdout.strip().splitlines()[-2:]
    assert status == "done"
    code, content_type, body = answer.split(" ", 2)
    assert (code, content_type) == ("501", "application/json")
    assert "metrics extra" in json.loads(body)["detail"]
    assert "transition=succeed" in done.stderr  # the log is on, and
    assert "Traceback" not in done.stderr and "metrics not recorded" not in done.stderr
