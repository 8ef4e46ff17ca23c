"""``/api/schedules`` and the schedule admin, over real request handling."""

from datetime import UTC, datetime

import pytest

from jobs import schedules
from jobs.models import Job, Schedule

pytestmark = pytest.mark.django_db

BODY = {"name": "nightly", "cron": "0 3 * * *", "task": "echo", "payload": {"k": 1}}


def make(**fields):
    return schedules.save(Schedule(**{**BODY, **fields}))


@pytest.mark.parametrize("path", ["/api/schedules", "/api/schedules/"])
def test_create_returns_201_with_the_next_fire_time(api, path):
    response = api.post(path, {**BODY, "timezone": "Europe/Paris"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "nightly" and body["enabled"] is True and body["catch_up"] is False
    next_fire = datetime.fromisoformat(body["next_fire_at"].replace("Z", "+00:00"))
    assert next_fire > datetime.now(UTC)
    assert next_fire.astimezone(schedules.ZoneInfo("Europe/Paris")).hour == 3
    assert body["last_fire_at"] is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", 5),
        ("cron", 0),
        ("task", ["echo"]),
        ("queue", 1),
        ("priority", "5"),
        ("enabled", 1),
        ("catch_up", "true"),
        ("timezone", 1),
    ],
)
def test_create_refuses_values_of_the_wrong_json_type(api, field, value):
    response = api.post("/api/schedules", {**BODY, field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Schedule.objects.exists()


def test_list_and_retrieve(api):
    make()
    make(name="hourly", cron="0 * * * *")
    listed = api.get("/api/schedules")
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()] == ["hourly", "nightly"]
    one = api.get(f"/api/schedules/{listed.json()[1]['id']}")
    assert one.json()["cron"] == "0 3 * * *"
    assert api.get("/api/schedules?enabled=false").json() == []


def test_update_restarts_the_timetable_and_disabling_clears_it(api):
    schedule = make()
    response = api.patch(f"/api/schedules/{schedule.pk}", {"cron": "*/5 * * * *"}, format="json")
    assert response.status_code == 200, response.content
    schedule.refresh_from_db()
    assert schedule.cron == "*/5 * * * *" and schedule.next_fire_at.minute % 5 == 0
    assert schedule.payload == {"k": 1}
    response = api.patch(f"/api/schedules/{schedule.pk}", {"enabled": False}, format="json")
    assert response.json()["next_fire_at"] is None


def test_delete(api):
    schedule = make()
    assert api.delete(f"/api/schedules/{schedule.pk}").status_code == 204
    assert not Schedule.objects.exists()


def test_run_queues_a_job_now(api):
    schedule = make()
    response = api.post(f"/api/schedules/{schedule.pk}/run")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.task, job.payload, job.status) == ("echo", {"k": 1}, "queued")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "99 * * * *"}, "cron"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"task": "no-such-task"}, "task"),
        ({"priority": 500}, "priority"),
        ({"queue": "bad queue!"}, "queue"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_input_is_a_400_with_a_message(api, changes, field):
    response = api.post("/api/schedules", {**BODY, **changes}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Schedule.objects.exists()


def test_duplicate_name_is_a_409(api):
    """A conflict with another schedule, not invalid input (the request itself is valid)."""
    make()
    response = api.post("/api/schedules", BODY, format="json")
    assert response.status_code == 409 and "nightly" in response.json()["detail"]
    assert Schedule.objects.count() == 1


def test_anonymous_clients_get_a_401_and_change_nothing(anon):
    """README: reading and writing schedules need credentials (401 without them)."""
    schedule = make()
    for response in [
        anon.get("/api/schedules"),
        anon.get(f"/api/schedules/{schedule.pk}"),
        anon.post("/api/schedules", {**BODY, "name": "other"}, format="json"),
        anon.patch(f"/api/schedules/{schedule.pk}", {"enabled": False}, format="json"),
        anon.delete(f"/api/schedules/{schedule.pk}"),
        anon.post(f"/api/schedules/{schedule.pk}/run"),
    ]:
        assert response.status_code == 401, response.content
        assert response.json()["code"] == "not_authenticated"
    assert list(Schedule.objects.values_list("pk", "enabled")) == [(schedule.pk, True)]
    assert not Job.objects.exists()


# -- admin ------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_(client, user):
    client.force_login(user)
    return client


def test_admin_add_form_validates_and_sets_the_next_fire_time(admin_client_):
    url = "/admin/jobs/schedule/add/"
    form = {"name": "x", "cron": "61 * * * *", "timezone": "UTC", "task": "echo", "payload": "null"}
    response = admin_client_.post(url, form)
    assert response.status_code == 200 and b"not a valid cron" in response.content
    response = admin_client_.post(url, {**form, "cron": "*/5 * * * *", "enabled": "on"})
    assert response.status_code == 302
    assert Schedule.objects.get(name="x").next_fire_at is not None


def test_admin_add_form_refuses_an_unknown_task(admin_client_):
    """The task name is checked by the admin's form (the model does not know the registry)."""
    form = {"name": "x", "cron": "*/5 * * * *", "timezone": "UTC", "task": "nope"}
    response = admin_client_.post("/admin/jobs/schedule/add/", {**form, "payload": "null"})
    assert response.status_code == 200 and b"unknown task" in response.content
    assert not Schedule.objects.exists()


def test_admin_actions(admin_client_):
    schedule = make()
    url = "/admin/jobs/schedule/"
    admin_client_.post(url, {"action": "disable", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None
    admin_client_.post(url, {"action": "enable", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_fire_at is not None
    response = admin_client_.post(
        url, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True
    )
    assert b"1 job(s) queued" in response.content
    assert Job.objects.filter(task="echo").count() == 1
    assert admin_client_.get(url).status_code == 200


def test_list_filters_refuse_values_they_cannot_read(api):
    make()
    assert api.get("/api/schedules?enabled=true").status_code == 200
    assert api.get("/api/schedules?enabled=null").status_code == 400


# -- a cron expression that never fires (issue 12, point 3) -------------------------------------

NEVER = ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 0 30 2 *"]


@pytest.mark.parametrize("cron", NEVER)
@pytest.mark.parametrize("enabled", [True, False])
def test_a_cron_that_never_fires_is_a_400_naming_cron(api, cron, enabled):
    body = {**BODY, "cron": cron, "enabled": enabled}
    response = api.post("/api/schedules", body, format="json")
    assert response.status_code == 400, response.content
    assert "never fires" in response.json()["errors"]["cron"][0]
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("cron", NEVER)
def test_enabling_a_saved_schedule_that_never_fires_is_a_400_naming_cron(api, cron):
    """A row saved before the rule (disabled, so no fire time was computed) cannot be enabled."""
    schedule = Schedule.objects.create(**{**BODY, "cron": cron, "enabled": False})
    response = api.patch(f"/api/schedules/{schedule.pk}", {"enabled": True}, format="json")
    assert response.status_code == 400, response.content
    assert "cron" in response.json()["errors"]
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None


def test_a_cron_that_fires_rarely_is_accepted(api):
    response = api.post("/api/schedules", {**BODY, "cron": "0 0 29 2 *"}, format="json")
    assert response.status_code == 201
    assert response.json()["next_fire_at"][5:10] == "02-29"


def test_admin_refuses_a_cron_that_never_fires(admin_client_):
    form = {"name": "x", "cron": "0 0 31 2 *", "timezone": "UTC", "task": "echo"}
    response = admin_client_.post("/admin/jobs/schedule/add/", {**form, "enabled": "on"})
    assert response.status_code == 200 and b"never fires" in response.content
    assert not Schedule.objects.exists()
    schedule = Schedule.objects.create(**form, enabled=False)
    response = admin_client_.post(
        "/admin/jobs/schedule/",
        {"action": "enable", "_selected_action": [schedule.pk]},
        follow=True,
    )
    assert response.status_code == 200 and b"never fires" in response.content
    schedule.refresh_from_db()
    assert not schedule.enabled


# -- unknown and read-only fields (issue 12, point 5) -------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"priorty": 3},
        {"id": 77},
        {"next_fire_at": "2030-01-01T00:00:00Z"},
        {"last_fire_at": "2030-01-01T00:00:00Z"},
        {"created_at": "2030-01-01T00:00:00Z"},
    ],
)
def test_unknown_and_read_only_fields_are_refused(api, extra):
    response = api.post("/api/schedules", {**BODY, **extra}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {name: ["Unknown or read-only field."] for name in extra}
    assert not Schedule.objects.exists()
    schedule = make()
    response = api.patch(f"/api/schedules/{schedule.pk}", extra, format="json")
    assert response.status_code == 400, response.content
    response = api.put(f"/api/schedules/{schedule.pk}", {**BODY, **extra}, format="json")
    assert response.status_code == 400, response.content
    assert Schedule.objects.get().pk == schedule.pk
