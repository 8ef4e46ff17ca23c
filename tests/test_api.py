"""The REST API, over real HTTP handling through Django's test client."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job, Status

pytestmark = pytest.mark.django_db

PROTOTYPE_FIELDS = {"id", "payload", "status", "created_at", "updated_at", "result", "error"}


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/"])
def test_create_returns_201_and_the_job(api, path):
    response = api.post(path, {"payload": "hello"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert PROTOTYPE_FIELDS <= body.keys()
    assert body["status"] == "queued" and body["task"] == "simulate"
    assert body["payload"] == "hello" and body["result"] is None
    assert Job.objects.get(pk=body["id"]).payload == "hello"


def test_create_accepts_all_options(api):
    body = {
        "task": "echo",
        "payload": {"a": [1, 2]},
        "queue": "mail",
        "priority": 7,
        "run_after": "2030-01-01T00:00:00Z",
        "max_attempts": 5,
    }
    job = api.post("/api/jobs", body, format="json").json()
    assert {k: job[k] for k in body} == {**body, "run_after": "2030-01-01T00:00:00Z"}


def test_create_with_a_known_idempotency_key_returns_the_existing_job(api):
    first = api.post("/api/jobs", {"task": "echo", "idempotency_key": "abc"}, format="json")
    second = api.post("/api/jobs", {"task": "echo", "idempotency_key": "abc"}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_session_authentication_works(client, user):
    client.force_login(user)
    response = client.post("/api/jobs", {"task": "echo"}, content_type="application/json")
    assert response.status_code == 201


def test_list_is_a_json_array_newest_first(api, make_job):
    jobs = [make_job(payload=i) for i in range(3)]
    response = api.get("/api/jobs")
    assert response.status_code == 200
    assert [j["id"] for j in response.json()] == [str(j.pk) for j in reversed(jobs)]
    assert "Link" not in response


def test_list_pages_through_link_headers(api, make_job):
    for i in range(5):
        make_job(payload=i)
    seen, url = [], "/api/jobs?page_size=2"
    while url:
        response = api.get(url)
        seen += [j["payload"] for j in response.json()]
        link = response.headers.get("Link", "")
        nxt = [part for part in link.split(",") if 'rel="next"' in part]
        url = nxt[0].split(";")[0].strip(" <>") if nxt else None
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_list_filters(api, make_job):
    a = make_job(queue="a", task="echo")
    b = make_job(queue="b", task="noop")
    lifecycle.cancel(job_id=b.pk)

    def ids(query):
        response = api.get(f"/api/jobs?{query}")
        assert response.status_code == 200, response.content
        return {j["id"] for j in response.json()}

    assert ids("status=queued") == {str(a.pk)}
    assert ids("status=queued&status=cancelled") == {str(a.pk), str(b.pk)}
    assert ids("queue=b") == {str(b.pk)}
    assert ids("task=echo") == {str(a.pk)}
    assert ids("created_after=2000-01-01T00:00:00Z") == {str(a.pk), str(b.pk)}
    assert ids("created_before=2000-01-01T00:00:00Z") == set()


def test_list_ordering(api, make_job):
    low, high = make_job(priority=-1), make_job(priority=9)
    body = api.get("/api/jobs?ordering=-priority").json()
    assert [j["id"] for j in body] == [str(high.pk), str(low.pk)]


@pytest.mark.parametrize("suffix", ["", "/"])
def test_get_one(api, make_job, suffix):
    job = make_job(payload={"x": 1})
    response = api.get(f"/api/jobs/{job.pk}{suffix}")
    assert response.status_code == 200
    assert response.json()["payload"] == {"x": 1}
    assert response.json()["history"] == []


def test_get_one_shows_each_failed_attempt_with_its_error_and_traceback(api, make_job):
    job = make_job(max_attempts=2)
    (job,) = lifecycle.claim(worker_id="w1")
    lifecycle.fail(job=job, worker_id="w1", error="E1", traceback="Traceback: a\nValueError: E1")
    history = api.get(f"/api/jobs/{job.pk}").json()["history"]
    assert [(h["number"], h["outcome"], h["error"], h["traceback"]) for h in history] == [
        (1, "failed", "E1", "Traceback: a\nValueError: E1")
    ]
    assert history[0]["worker_id"] == "w1"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
def test_unknown_or_malformed_id_is_404(api, job_id):
    for response in [
        api.get(f"/api/jobs/{job_id}"),
        api.delete(f"/api/jobs/{job_id}"),
        api.patch(f"/api/jobs/{job_id}/status", {"status": "done"}, format="json"),
        api.post(f"/api/jobs/{job_id}/run"),
        api.post(f"/api/jobs/{job_id}/cancel"),
    ]:
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_delete_returns_the_deleted_job(api, make_job):
    job = make_job(payload="bye")
    response = api.delete(f"/api/jobs/{job.pk}")
    assert response.status_code == 200
    assert response.json()["payload"] == "bye"
    assert not Job.objects.filter(pk=job.pk).exists()


def test_deleting_a_running_job_is_409_and_keeps_it(api, make_job):
    """As the admin refuses it: its holder would go on running a job nobody can see."""
    job = make_job()
    lifecycle.claim_for_hand(job_id=job.pk)
    response = api.delete(f"/api/jobs/{job.pk}")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "cannot delete a processing job: cancel it first",
        "code": "conflict",
    }
    assert Job.objects.get(pk=job.pk).status == Status.PROCESSING


def test_patch_status_through_the_lifecycle(api, make_job):
    job = make_job()
    response = api.patch(f"/api/jobs/{job.pk}/status", {"status": "processing"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "processing"
    assert response.json()["worker_id"] == lifecycle.MANUAL_HOLDER


def test_patch_status_rejects_unknown_status(api, make_job):
    job = make_job()
    response = api.patch(f"/api/jobs/{job.pk}/status", {"status": "paused"}, format="json")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_patch_status_refused_transition_is_409(api, make_job):
    job = make_job()
    lifecycle.cancel(job_id=job.pk)
    response = api.patch(f"/api/jobs/{job.pk}/status", {"status": "done"}, format="json")
    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]


def test_run_runs_a_queued_job_now(api, make_job, settings):
    settings.JOBS_SIMULATE_SECONDS = 0.01
    job = make_job(task="simulate", payload="p")
    response = api.post(f"/api/jobs/{job.pk}/run")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "done"
    assert body["result"] == {"processed": "p", "length": 1}
    assert body["attempts"] == 1


def test_run_after_manual_processing_follows_the_prototype_flow(api, make_job):
    job = make_job(task="echo", payload=5)
    api.patch(f"/api/jobs/{job.pk}/status", {"status": "processing"}, format="json")
    body = api.post(f"/api/jobs/{job.pk}/run").json()
    assert (body["status"], body["result"], body["attempts"]) == ("done", 5, 1)


def test_run_records_a_failure(api, make_job):
    job = make_job(task="test.fail", payload="x", max_attempts=1)
    body = api.post(f"/api/jobs/{job.pk}/run").json()
    assert body["status"] == "failed"
    assert "ValueError" in body["error"] and "Traceback" in body["traceback"]


def test_run_on_a_worker_held_or_finished_job_is_409(api, make_job):
    make_job()
    (held,) = lifecycle.claim(worker_id="w")
    assert api.post(f"/api/jobs/{held.pk}/run").status_code == 409
    done = make_job()
    api.post(f"/api/jobs/{done.pk}/run")
    assert api.post(f"/api/jobs/{done.pk}/run").status_code == 409


def test_cancel_and_retry(api, make_job):
    job = make_job()
    assert api.post(f"/api/jobs/{job.pk}/cancel").json()["status"] == "cancelled"
    assert api.post(f"/api/jobs/{job.pk}/cancel").status_code == 409
    assert api.post(f"/api/jobs/{job.pk}/retry").json()["status"] == "queued"
    assert api.post(f"/api/jobs/{job.pk}/retry").status_code == 409


def test_health(anon):
    response = anon.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_schema_and_docs(api):
    schema = api.get("/api/schema")
    assert schema.status_code == 200
    assert b"/api/jobs/{id}/status" in schema.content
    docs = api.get("/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_browsable_api_renders(api, make_job):
    job = make_job()
    for path in ["/api/", "/api/jobs", f"/api/jobs/{job.pk}"]:
        response = api.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
        assert b"<html" in response.content


def test_workers_lists_the_registry_with_liveness_and_current_jobs(api, make_job):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import Worker

    now = timezone.now()
    Worker.objects.create(
        id="w-live", hostname="h", pid=1, started_at=now, last_heartbeat_at=now, queues=["a"]
    )
    stale = now - timedelta(hours=1)
    Worker.objects.create(
        id="w-dead", hostname="h", pid=2, started_at=stale, last_heartbeat_at=stale
    )
    make_job()
    (job,) = lifecycle.claim(worker_id="w-live")
    body = {w["id"]: w for w in api.get("/api/workers").json()}
    assert body["w-live"]["alive"] and not body["w-dead"]["alive"]
    assert body["w-live"]["current_jobs"] == [str(job.pk)]
    assert body["w-live"]["queues"] == ["a"]
    assert api.get("/api/workers/w-dead").json()["pid"] == 2


def test_bulk_create_queues_an_array_in_one_request(api):
    body = [{"task": "echo", "payload": i, "priority": i % 3} for i in range(50)]
    response = api.post("/api/jobs", body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert [job["payload"] for job in created] == list(range(50))
    assert Job.objects.filter(status=Status.QUEUED).count() == 50


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([], "non_field_errors", "send between 1 and 1000 jobs at once"),
        ([{"task": "echo"}, {"task": "nope"}], "1.task", "unknown task 'nope'; registered "),
        ([{"task": "echo", "idempotency_key": "k"}], "0.idempotency_key", "not supported in "),
        (
            [{"task": "echo"}] * 2 + [{"priority": 101}],
            "2.priority",
            "Use a number from -100 to 100.",
        ),
    ],
)
def test_bulk_create_is_all_or_nothing_with_a_400_naming_the_item(api, body, field, message):
    """README: one invalid job makes the whole array a 400 naming its index and field
    ("1.priority"); nothing is queued."""
    response = api.post("/api/jobs", body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert list(errors) == [field] and errors[field][0].startswith(message), errors
    assert not Job.objects.exists()


def test_bulk_create_is_capped(api, settings):
    settings.JOBS_MAX_BULK = 3
    response = api.post("/api/jobs", [{"task": "echo"}] * 4, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"non_field_errors": ["send between 1 and 3 jobs at once"]}
    assert api.post("/api/jobs", [{"task": "echo"}] * 3, format="json").status_code == 201


def test_schema_documents_the_error_answers(api):
    schema = api.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {"detail", "code"}
    create = schema["paths"]["/api/jobs/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409", "413", "415", "429"} <= create.keys()
    error_ref = create["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref == "#/components/schemas/Error"
    detail = schema["paths"]["/api/jobs/{id}/"]
    assert {"200", "401", "403", "404"} <= detail["get"]["responses"].keys()
    assert "429" not in detail["get"]["responses"]
    body = schema["components"]["schemas"]["JobRequest"]
    assert body["additionalProperties"] is False
    assert {"simulate", "echo", "noop"} <= set(body["properties"]["task"]["enum"])


@pytest.fixture
def failed(make_job):
    def make(**overrides):
        job = make_job(max_attempts=1, **overrides)
        (held,) = lifecycle.claim(worker_id="w", limit=1)
        lifecycle.fail(job=held, worker_id="w", error="boom")
        return job

    return make


def test_bulk_retry_by_ids_and_by_filter(api, make_job, failed):
    a, b = failed(queue="a"), failed(queue="b")
    queued = make_job()
    response = api.post("/api/jobs/retry", {"ids": [str(a.pk), str(queued.pk)]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"changed": 1, "skipped": {"queued": 1}, "batches": 1}
    assert Job.objects.get(pk=a.pk).status == Status.QUEUED
    response = api.post("/api/jobs/retry", {"status": "failed", "queue": "b"}, format="json")
    assert response.json()["changed"] == 1
    assert Job.objects.get(pk=b.pk).status == Status.QUEUED


@pytest.mark.parametrize(
    "body",
    [
        {"ids": []},
        {"ids": ["nope"]},
        {"ids": [12345]},  # a UUID is a string in JSON, never an integer
        {"status": "queued"},
        {"ids": ["x"], "queue": "a"},
        {"q": 1},
        {"queue": 2644806},
        {"task": ["echo"]},
        {"ids": ["00000000-0000-0000-0000-000000000000"], "all": True},
        {"all": "yes"},
    ],
)
def test_bulk_retry_rejects_bad_selections(api, body):
    assert api.post("/api/jobs/retry", body, format="json").status_code == 400


@pytest.mark.parametrize("body", [None, {}, {"all": False}], ids=["no-body", "empty", "all-false"])
def test_bulk_retry_without_a_selection_is_400_and_retries_nothing(api, failed, body):
    """An empty body is no request to retry the whole failure queue: that takes "all": true."""
    job = failed()
    response = api.post("/api/jobs/retry", body, format="json")
    assert response.status_code == 400, response.content
    assert '"all": true' in response.json()["detail"]
    assert Job.objects.get(pk=job.pk).status == Status.FAILED


def test_bulk_retry_all_retries_the_failure_queue(api, failed, make_job):
    jobs, cancelled = [failed(), failed()], make_job()
    lifecycle.cancel(job_id=cancelled.pk)
    response = api.post("/api/jobs/retry", {"all": True}, format="json")
    assert response.json() == {"changed": 2, "skipped": {}, "batches": 1}
    assert {Job.objects.get(pk=job.pk).status for job in jobs} == {Status.QUEUED}
    assert Job.objects.get(pk=cancelled.pk).status == Status.CANCELLED


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_job_representation_is_drfs_own(make_job, zone):
    """The fast representation gives exactly what DRF's generic one gives, in the
    current time zone (and for a job fresh from enqueue, and one read back)."""
    from django.utils import timezone
    from rest_framework import serializers

    from jobs.api.serializers import JobDetailSerializer, JobSerializer

    fresh = make_job(payload={"k": [1, "x"]}, timeout=5, priority=3, queue="q")  # timeout an int
    make_job(task="echo", payload="p")
    (claimed,) = lifecycle.claim(worker_id="w")
    lifecycle.succeed(job=claimed, worker_id="w", result={"ok": True})
    failed = make_job(max_attempts=1)
    (failed,) = lifecycle.claim(worker_id="w")
    lifecycle.fail(job=failed, worker_id="w", error="E", traceback="tb")
    for cls in (JobSerializer, JobDetailSerializer):
        for job in [fresh, claimed, failed, *Job.objects.all()]:
            with timezone.override(zone):
                fast = cls(job).data
                generic = serializers.ModelSerializer.to_representation(cls(job), job)
            assert fast == generic and list(fast) == list(generic)
            assert [type(v) for v in fast.values()] == [type(v) for v in generic.values()]


SHARED_INPUTS = [
    {},
    {"task": "echo", "payload": {"a": [1, None]}, "queue": "q:1", "priority": -3},
    {"task": "", "priority": 101, "max_attempts": "3", "timeout": 0, "queue": "bad queue!"},
    {"run_after": "tomorrow", "idempotency_key": "k" * 201, "status": "done", "priorty": 1},
    {"run_after": "2030-01-01T00:00:00+02:00", "timeout": None, "idempotency_key": ""},
    {"priority": True, "max_attempts": 2.5, "task": 5, "payload": None},
    "not an object",
    ["a", "list"],
    None,
]


@pytest.mark.parametrize("data", SHARED_INPUTS)
def test_shared_serializer_validates_as_a_fresh_one(data):
    """JobSerializer.shared (fields built once per class) checks input exactly as DRF's own."""
    from jobs.api.serializers import JobSerializer

    for _ in range(2):  # the second time, with the fields the first one built
        fresh, shared = JobSerializer(data=data), JobSerializer.shared(data=data)
        assert fresh.is_valid() == shared.is_valid()
        assert fresh.errors == shared.errors and fresh.validated_data == shared.validated_data
        assert shared.fields is JobSerializer.shared().fields is not fresh.fields


def test_shared_serializer_writes_as_a_fresh_one(make_job):
    from jobs.api.serializers import JobDetailSerializer, JobSerializer

    job = make_job(payload={"k": [1, "x"]}, timeout=5, priority=3, queue="q")
    for cls in (JobSerializer, JobDetailSerializer):
        assert cls.shared(job).data == cls(job).data
    assert "history" in JobDetailSerializer.shared(job).data
    assert "history" not in JobSerializer.shared(job).data
    with pytest.raises(TypeError):
        JobSerializer.shared(job, context={})


# -- bulk create: plain jobs skip the serializer, errors are the same -----------------------

BAD_JOBS = [
    {"task": "nope"},
    {"task": ""},
    {"task": 5},
    {"task": "echo", "priority": 500},
    {"task": "echo", "priority": True},
    {"task": "echo", "priority": "1"},
    {"task": "echo", "queue": ""},
    {"task": "echo", "queue": "no spaces"},
    {"task": "echo", "max_attempts": 0},
    {"task": "echo", "timeout": 0},
    {"task": "echo", "run_after": "not a date"},
    {"task": "echo", "priorty": 1},
    {"task": "echo", "status": "done"},
    {"task": "send_email", "payload": {"to": "nobody"}},
    "not an object",
]


@pytest.mark.parametrize("bad", BAD_JOBS)
def test_bulk_create_names_the_index_of_a_bad_job_as_a_single_create_names_its_field(api, bad):
    alone = api.post("/api/jobs", bad, format="json")
    in_bulk = api.post("/api/jobs", [{"task": "echo"}, bad, {"task": "echo"}], format="json")
    assert alone.status_code == in_bulk.status_code == 400, in_bulk.content
    assert not Job.objects.exists()
    errors = in_bulk.json()["errors"]
    if isinstance(bad, dict):
        assert errors == {f"1.{field}": texts for field, texts in alone.json()["errors"].items()}
    else:
        assert list(errors) == ["1.non_field_errors"]


def test_bulk_create_converts_what_the_serializer_converts(api):
    """Values of another JSON type than the plain one (a date, 3.0 for 3) are taken as
    a single create takes them."""
    body = [
        {"task": "echo", "payload": 1, "priority": 3.0, "timeout": 2},
        {"task": "echo", "run_after": "2030-01-01T00:00:00Z", "idempotency_key": ""},
    ]
    response = api.post("/api/jobs", body, format="json")
    assert response.status_code == 201, response.content
    first, second = response.json()
    assert (first["priority"], first["timeout"], second["run_after"]) == (
        3,
        2.0,
        "2030-01-01T00:00:00Z",
    )
    assert Job.objects.get(pk=first["id"]).timeout == 2.0


def test_plain_jobs_are_what_the_serializer_validates_them_to():
    from jobs.api.serializers import PLAIN_JOB_TYPES, JobSerializer, plain_jobs

    writable = {name for name, field in JobSerializer().fields.items() if not field.read_only}
    assert PLAIN_JOB_TYPES.keys() <= writable
    items = [
        {"task": "echo"},
        {"task": "echo", "payload": {"k": [1, None]}, "queue": "q", "priority": -3},
        {"task": "echo", "max_attempts": 4, "timeout": 3, "run_after": None},
        {"task": "echo", "timeout": 0.5, "idempotency_key": None, "payload": "x"},
    ]
    serializer = JobSerializer(data=items, many=True)
    assert serializer.is_valid(), serializer.errors
    assert plain_jobs(items) == [dict(spec) for spec in serializer.validated_data]
    assert plain_jobs([*items, {"task": "echo", "run_after": "2030-01-01T00:00:00Z"}]) is None


def test_a_bulk_create_names_the_items_that_carry_an_idempotency_key(api):
    items = [{"task": "echo"}, {"task": "echo", "idempotency_key": "k"}, {"task": "echo"}]
    response = api.post("/api/jobs", items, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"1.idempotency_key": ["not supported in a bulk create"]}
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("priority", 500, "Use a number from -100 to 100."),
        ("max_attempts", 0, "Use a number from 1 to 100."),
    ],
)
def test_a_range_error_reads_the_same_from_a_create_a_bulk_create_and_python(
    api, field, value, message
):
    from jobs.exceptions import InvalidJob

    single = api.post("/api/jobs", {"task": "noop", field: value}, format="json").json()
    bulk = api.post("/api/jobs", [{"task": "noop"}, {"task": "noop", field: value}], format="json")
    with pytest.raises(InvalidJob) as python:
        lifecycle.enqueue(task="noop", **{field: value})
    assert single["errors"] == {field: [message]}
    assert bulk.json()["errors"] == {f"1.{field}": [message]}
    assert python.value.errors == {field: [message]}


def test_bulk_cancel_and_delete_by_filter_reach_every_matching_job(api, make_job, settings):
    """A filter acts on every matching job, past JOBS_MAX_BULK, in batches; a running job
    is cancelled (never deleted from under its worker)."""
    settings.JOBS_MAX_BULK = 2
    jobs = [make_job(queue="mail") for _ in range(5)]
    other = make_job(queue="media")
    (running,) = lifecycle.claim(worker_id="w", queues=["mail"], limit=1)
    deleted = api.post("/api/jobs/delete", {"queue": "mail"}, format="json").json()
    assert deleted == {"changed": 4, "skipped": {"processing": 1}, "batches": 2}
    assert Job.objects.get(pk=running.pk).status == Status.PROCESSING
    response = api.post("/api/jobs/cancel", {"queue": "mail"}, format="json")
    assert response.json() == {"changed": 1, "skipped": {}, "batches": 1}
    assert Job.objects.get(pk=running.pk).status == Status.CANCELLED
    assert Job.objects.get(pk=other.pk).status == Status.QUEUED
    assert len(jobs) == 5


def test_bulk_retry_by_cause_and_time(api, failed):
    old = failed()
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    new = failed()
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    body = {"error_class": "boom", "finished_after": since}  # "boom": its first line
    assert api.post("/api/jobs/retry", body, format="json").json()["changed"] == 1
    assert Job.objects.get(pk=new.pk).status == Status.QUEUED
    assert Job.objects.get(pk=old.pk).status == Status.FAILED


@pytest.mark.parametrize("path", ["/api/jobs/cancel", "/api/jobs/delete"])
@pytest.mark.parametrize(
    "body",
    [None, {}, {"all": False}, {"ids": []}, {"status": "bogus"}, {"ids": ["x"], "task": "a"}],
)
def test_bulk_cancel_and_delete_refuse_no_or_bad_selection(api, make_job, path, body):
    job = make_job()
    assert api.post(path, body, format="json").status_code == 400
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED


@pytest.mark.parametrize(
    ("path", "perm"),
    [
        ("/api/jobs/cancel", "change"),
        ("/api/jobs/delete", "delete"),
        ("/api/jobs/retry", "change"),
    ],
)
def test_bulk_verbs_need_their_permission(make_user, client_for, make_job, path, perm):
    job = make_job()
    others = {"change", "delete", "view"} - {perm}
    refused = client_for(make_user(*sorted(others)))
    assert refused.post(path, {"ids": [str(job.pk)]}, format="json").status_code == 403
    allowed = client_for(make_user(perm, name="allowed"))
    assert allowed.post(path, {"ids": [str(job.pk)]}, format="json").status_code == 200
