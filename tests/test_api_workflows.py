"""``/api/workflows``: one request creates a graph of jobs, all or nothing; GET shows it."""

import pytest

from jobs.models import Dependency, Job, Status, Workflow

pytestmark = pytest.mark.django_db

URL = "/api/workflows"

GALLERY = {
    "name": "gallery",
    "jobs": [
        {"name": "resize-1", "task": "echo", "payload": {"image": 1}},
        {"name": "resize-2", "task": "echo", "payload": {"image": 2}, "priority": 5},
        {
            "name": "gallery",
            "task": "echo",
            "after": ["resize-1", "resize-2"],
            "on_parent_failure": "run",
        },
    ],
}


def test_one_request_creates_the_graph(api):
    response = api.post(URL, GALLERY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "gallery"
    assert body["state"] == "running"
    assert body["counts"] == {"queued": 2, "waiting": 1}
    jobs = {job["name"]: job for job in body["jobs"]}
    assert jobs["gallery"]["status"] == Status.WAITING
    assert jobs["gallery"]["after"] == ["resize-1", "resize-2"]
    assert jobs["gallery"]["waiting_for"] == ["resize-1 (queued)", "resize-2 (queued)"]
    assert jobs["resize-2"]["priority"] == 5
    assert jobs["resize-1"]["workflow"] == body["id"]
    assert Dependency.objects.count() == 2


def test_get_shows_each_job_and_the_overall_state(api):
    created = api.post(URL, GALLERY, format="json").json()
    for job in Job.objects.filter(status=Status.QUEUED):
        api.post(f"/api/jobs/{job.pk}/run")
    body = api.get(f"{URL}/{created['id']}").json()
    jobs = {job["name"]: job for job in body["jobs"]}
    assert jobs["gallery"]["status"] == Status.QUEUED
    assert [p["result"] for p in jobs["gallery"]["parent_results"]] == [
        {"image": 1},
        {"image": 2},
    ]
    api.post(f"/api/jobs/{jobs['gallery']['id']}/run")
    body = api.get(f"{URL}/{created['id']}/").json()
    assert (body["state"], body["counts"]) == ("done", {"done": 3})
    listed = api.get(URL).json()
    assert [(w["id"], w["state"], w["counts"]) for w in listed] == [
        (created["id"], "done", {"done": 3})
    ]


@pytest.mark.parametrize(
    ("jobs", "field", "message"),
    [
        (
            [
                {"name": "a", "task": "echo", "after": ["c"]},
                {"name": "b", "task": "echo", "after": ["a"]},
                {"name": "c", "task": "echo", "after": ["b"]},
            ],
            "jobs",
            "The jobs wait for each other in a cycle: a -> c -> b -> a.",
        ),
        (
            [{"name": "a", "task": "echo"}, {"name": "b", "task": "echo", "after": ["x"]}],
            "jobs.1.after",
            "No job is named 'x'.",
        ),
        (
            [{"name": "a", "task": "echo"}, {"name": "a", "task": "echo"}],
            "jobs.1.name",
            "Job 0 has the name 'a' too.",
        ),
        (
            [{"name": "a", "task": "echo"}, {"name": "b", "task": "echo", "priority": 101}],
            "jobs.1.priority",
            "Use a number from -100 to 100.",
        ),
        ([{"name": "a", "task": "nope"}], "jobs.0.task", "nope"),
        ([{"name": "a", "idempotency_key": "k"}], "jobs.0.idempotency_key", "Unknown"),
        ([{"name": "a b"}], "jobs.0.name", "Use 1-100 letters"),
        ([{"task": "echo"}], "jobs.0.name", "required"),
        ([], "jobs.non_field_errors", "at least 1"),
    ],
    ids=["cycle", "dangling", "duplicate", "range", "task", "key", "name", "no-name", "empty"],
)
def test_a_bad_graph_is_a_400_naming_the_fault_and_nothing_is_created(api, jobs, field, message):
    response = api.post(URL, {"jobs": jobs}, format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert message in " ".join(errors[field]), errors
    assert not Job.objects.exists()
    assert not Workflow.objects.exists()


def test_cancel_cancels_what_has_not_started(api):
    created = api.post(URL, GALLERY, format="json").json()
    first = Job.objects.get(step="resize-1")
    api.post(f"/api/jobs/{first.pk}/run")
    body = api.post(f"{URL}/{created['id']}/cancel").json()
    assert body["counts"] == {"done": 1, "cancelled": 2}
    assert body["state"] == "cancelled"


def test_the_job_permissions_apply(make_user, client_for, anon):
    viewer = client_for(make_user("view"))
    adder = client_for(make_user("add"))
    assert anon.post(URL, GALLERY, format="json").status_code == 401
    assert viewer.post(URL, GALLERY, format="json").status_code == 403
    created = adder.post(URL, GALLERY, format="json")
    assert created.status_code == 201
    assert adder.get(URL).status_code == 403
    assert viewer.get(f"{URL}/{created.json()['id']}").status_code == 200
    assert viewer.post(f"{URL}/{created.json()['id']}/cancel").status_code == 403
    assert viewer.get(f"{URL}/not-a-uuid").status_code == 404
