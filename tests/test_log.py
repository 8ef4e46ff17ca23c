"""Transition log lines: readable plain text by default, JSON lines with JOBS_LOG_FORMAT=json."""

import json
import logging
import os
import subprocess
import sys

import pytest

from jobs.models import Job
from jobs.observability.log import JsonFormatter
from tests.conftest import ROOT

TRANSITION_FIELDS = {"job_id", "transition", "status", "task", "queue", "attempt", "worker"}


def transitions(records: list[logging.LogRecord], job_id: str) -> dict[str, dict]:
    """Format the records as JSON lines; return those about ``job_id`` by transition."""
    lines = [json.loads(JsonFormatter().format(record)) for record in records]
    return {line["transition"]: line for line in lines if line.get("job_id") == job_id}


@pytest.mark.django_db
def test_web_process_logs_one_json_line_per_transition(api, caplog):
    caplog.set_level(logging.INFO, logger="jobs")
    job_id = api.post("/api/jobs", {"task": "echo", "payload": "hi"}, format="json").json()["id"]
    assert api.post(f"/api/jobs/{job_id}/run").json()["status"] == "done"
    lines = transitions(caplog.records, job_id)
    assert list(lines) == ["enqueue", "claim", "succeed"]
    assert all(TRANSITION_FIELDS <= line.keys() for line in lines.values())
    done = lines["succeed"]
    assert (done["task"], done["queue"], done["attempt"]) == ("echo", "default", 1)
    assert done["worker"].startswith("run-") and done["status"] == "done"
    assert done["outcome"] == "done" and done["duration"] >= 0
    assert done["level"] == "INFO" and done["logger"] == "jobs.lifecycle"
    assert done["message"].startswith(f"job={job_id} transition=succeed status=done")


@pytest.mark.django_db
def test_plain_lines_carry_the_same_fields_as_key_value_pairs(make_job, caplog):
    from jobs import runner

    caplog.set_level(logging.INFO, logger="jobs")
    job = make_job(task="test.permanent")
    runner.run_now(job_id=job.pk)
    (line,) = [r.getMessage() for r in caplog.records if "transition=fail" in r.getMessage()]
    assert f"job={job.pk} transition=fail status=failed task=test.permanent" in line
    assert "attempt=1 worker=run-" in line
    assert "outcome=failed" in line and "duration=" in line
    assert "error=jobs.exceptions.PermanentFailure: not worth retrying" in line


def test_json_formatter_keeps_tracebacks_and_odd_values():
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.getLogger("jobs.x").makeRecord(
            "jobs.x", logging.ERROR, "f", 1, "failed %s", ("a",), sys.exc_info(),
            extra={"when": object(), "n": 3},
        )  # fmt: skip
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed a" and line["n"] == 3
    assert "ValueError: bad" in line["exc_info"] and line["when"].startswith("<object")


@pytest.mark.slow
def test_worker_logs_json_lines(processes, make_job):
    ok = make_job(task="echo", payload="x", queue="jsonlog")
    bad = make_job(task="test.permanent", queue="jsonlog")
    worker = processes.worker("--once", "--queue", "jsonlog", env={"JOBS_LOG_FORMAT": "json"})
    assert worker.wait(timeout=60) == 0, processes.output(worker)
    output = processes.output(worker).splitlines()
    lines = [json.loads(text) for text in output if text.startswith("{")]
    assert len(lines) == len([text for text in output if text.strip()]), output  # all JSON
    by_job = {(line.get("job_id"), line.get("transition")): line for line in lines}
    succeeded = by_job[(str(ok.pk), "succeed")]
    failed = by_job[(str(bad.pk), "fail")]
    # A worker's claim is one line for the batch, naming its jobs.
    (claim,) = [line for line in lines if line.get("transition") == "claim"]
    assert claim["job_ids"] == [str(ok.pk), str(bad.pk)] and claim["count"] == 2
    assert claim["message"].startswith(
        f"transition=claim status=processing worker={claim['worker']}"
    )
    worker_id = claim["worker"]
    assert succeeded["worker"] == failed["worker"] == worker_id
    assert (succeeded["outcome"], failed["outcome"], failed["status"]) == (
        "done",
        "failed",
        "failed",
    )
    assert succeeded["queue"] == "jsonlog" and succeeded["attempt"] == 1
    assert succeeded["duration"] >= 0
    assert Job.objects.get(pk=ok.pk).status == "done"


@pytest.mark.slow
def test_an_unknown_log_format_stops_start_up_with_a_message():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "JOBS_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JOBS_LOG_FORMAT must be plain or json, not 'xml'" in result.stderr


@pytest.mark.django_db
def test_a_bulk_create_logs_every_job(api, caplog):
    caplog.set_level(logging.INFO, logger="jobs")
    body = [{"task": "echo", "payload": i, "queue": "bulk-log"} for i in range(3)]
    ids = {job["id"] for job in api.post("/api/jobs", body, format="json").json()}
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    enqueued = {line["job_id"] for line in lines if line.get("transition") == "enqueue"}
    assert len(ids) == 3 and enqueued == ids
