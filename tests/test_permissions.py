"""Each API endpoint and admin action needs its Django model permission, and only that."""

from typing import Any

import pytest
from django.contrib.auth.backends import ModelBackend
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from jobs import lifecycle
from jobs.api.authentication import TokenAuthentication
from jobs.models import Job, Status
from tests.admin_helpers import page_form
from tests.conftest import other_connection

pytestmark = pytest.mark.django_db

VERBS = ("view", "add", "change", "delete")

# method, path, body, permission needed, status when allowed, status the job starts in
ENDPOINTS = [
    ("get", "/api/jobs", None, "view", 200, Status.QUEUED),
    ("get", "/api/jobs/{id}", None, "view", 200, Status.QUEUED),
    ("options", "/api/jobs/{id}", None, "view", 200, Status.QUEUED),
    ("post", "/api/jobs", {"task": "echo"}, "add", 201, Status.QUEUED),
    ("delete", "/api/jobs/{id}", None, "delete", 200, Status.QUEUED),
    ("patch", "/api/jobs/{id}/status", {"status": "cancelled"}, "change", 200, Status.QUEUED),
    ("post", "/api/jobs/{id}/run", None, "change", 200, Status.QUEUED),
    ("post", "/api/jobs/{id}/cancel", None, "change", 200, Status.QUEUED),
    ("post", "/api/jobs/{id}/retry", None, "change", 200, Status.CANCELLED),
]
IDS = [f"{method} {path}" for method, path, *_ in ENDPOINTS]


def _call(client, endpoint, job):
    method, path, body, *_ = endpoint
    return getattr(client, method)(path.format(id=job.pk), body, format="json")


def _job(make_job, start):
    job = make_job(task="echo", payload=1)
    if start == Status.CANCELLED:
        lifecycle.cancel(job_id=job.pk)
    return Job.objects.get(pk=job.pk)


def _unchanged(job):
    now = Job.objects.filter(pk=job.pk).first()
    return now is not None and now.status == job.status and Job.objects.count() == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_anonymous_callers_are_refused_with_401(anon, make_job, endpoint):
    job = _job(make_job, endpoint[5])
    response = _call(anon, endpoint, job)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Token")
    assert _unchanged(job)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_users_holding_every_other_permission_are_refused_with_403(
    make_user, client_for, make_job, endpoint
):
    job = _job(make_job, endpoint[5])
    others = [verb for verb in VERBS if verb != endpoint[3]]
    response = _call(client_for(make_user(*others)), endpoint, job)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "You do not have permission to perform this action.",
        "code": "permission_denied",
    }
    assert _unchanged(job)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_users_holding_just_the_permission_are_allowed(make_user, client_for, make_job, endpoint):
    job = _job(make_job, endpoint[5])
    response = _call(client_for(make_user(endpoint[3])), endpoint, job)
    assert response.status_code == endpoint[4], response.content


def test_refused_before_looking_up_the_job(make_user, client_for):
    """No permission, no hint whether a job exists: 403 for any id."""
    client = client_for(make_user("add"))
    assert client.get("/api/jobs/00000000-0000-0000-0000-000000000000").status_code == 403


def test_session_users_need_the_permissions_too(client, make_user, make_job):
    job = make_job()
    client.force_login(make_user("view"))
    assert client.get(f"/api/jobs/{job.pk}").status_code == 200
    assert client.post(f"/api/jobs/{job.pk}/cancel").status_code == 403


def test_api_root_needs_a_signed_in_user(anon, make_user, client_for):
    assert anon.get("/api/").status_code == 401
    assert client_for(make_user()).get("/api/").status_code == 200


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_schema_and_docs_are_open_to_anyone_by_default(anon):
    """They describe the API, not its data; every call made from Swagger UI needs a token."""
    docs = anon.get("/docs", HTTP_ACCEPT=BROWSER)
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    schema = anon.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and "/api/jobs/" in schema.json()["paths"]


def test_docs_login_required_sends_a_browser_to_sign_in_and_back(
    anon, client, make_user, client_for, settings
):
    """JOBS_DOCS_LOGIN_REQUIRED: a browser goes to the login page and back to the docs; an
    API client gets a 401 in the error shape; a signed-in user reads them."""
    settings.JOBS_DOCS_LOGIN_REQUIRED = True
    signed_in = client_for(make_user())
    for path in ["/docs", "/api/schema"]:
        redirect = anon.get(path, HTTP_ACCEPT=BROWSER)
        assert redirect.status_code == 302, path
        assert redirect["Location"] == f"/api-auth/login/?next={path}"
        for accept in ("*/*", "application/json"):
            refused = anon.get(path, HTTP_ACCEPT=accept)
            assert refused.status_code == 401, (path, accept, refused.content)
            assert refused.json()["code"] == "not_authenticated"
            assert "WWW-Authenticate" in refused
        assert signed_in.get(path).status_code == 200, path

    make_user(name="reader")
    login_page = client.get("/api-auth/login/?next=/docs")
    assert login_page.status_code == 200
    back = client.post(
        "/api-auth/login/",
        {"username": "reader", "password": "pw-for-tests-only", "next": "/docs"},
        follow=True,
        HTTP_ACCEPT=BROWSER,
    )
    assert back.redirect_chain == [("/docs", 302)]
    assert back.status_code == 200 and b"swagger-ui" in back.content


def test_a_revoked_token_no_longer_works(make_user, client_for):
    user = make_user("view")
    client = client_for(user)
    assert client.get("/api/jobs").status_code == 200
    Token.objects.filter(user=user).delete()
    assert client.get("/api/jobs").status_code == 401


def test_a_deactivated_user_is_refused_on_the_next_request(make_user, client_for):
    user = make_user("add")
    client = client_for(user)
    assert client.post("/api/jobs", {"task": "echo"}, format="json").status_code == 201
    user.is_active = False
    user.save()
    response = client.post("/api/jobs", {"task": "echo"}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


def test_an_unknown_token_is_refused(anon):
    anon.credentials(HTTP_AUTHORIZATION="Token not-a-key")
    response = anon.post("/api/jobs", {"task": "echo"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "code": "authentication_failed"}


def test_a_permission_taken_away_counts_from_the_next_request(make_user, client_for):
    """Permissions are read with the token on every request: nothing is kept between them."""
    from django.contrib.auth.models import Group, Permission

    user = make_user("add")
    client = client_for(user)
    post = lambda: client.post("/api/jobs", {"task": "echo"}, format="json").status_code  # noqa: E731
    assert post() == 201
    add = Permission.objects.get(codename="add_job")
    user.user_permissions.remove(add)
    assert post() == 403
    group = Group.objects.create(name="submitters")
    group.permissions.add(add)
    user.groups.add(group)
    assert post() == 201
    group.permissions.remove(add)
    assert post() == 403
    group.permissions.add(add)
    assert post() == 201
    user.groups.remove(group)
    assert post() == 403


def _token_user(user):
    """The user as TokenAuthentication gives it to a request with ``user``'s token."""
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return Request(request, authenticators=[TokenAuthentication()]).user


def test_token_requests_read_the_permissions_with_the_token(
    make_user, client_for, django_assert_num_queries
):
    """One query for the token, its user and their permissions; none for the check itself."""
    from django.contrib.auth.models import Group, Permission

    user = make_user("view")
    group = Group.objects.create(name="adders")
    group.permissions.add(Permission.objects.get(codename="add_job"))
    user.groups.add(group)
    client = client_for(user)
    with django_assert_num_queries(1):
        assert client.get("/api/tasks").status_code == 200
    authed = _token_user(user)
    assert ModelBackend().get_user_permissions(authed) == {"jobs.view_job"}
    assert ModelBackend().get_group_permissions(authed) == {"jobs.add_job"}
    assert authed.get_all_permissions() == {"jobs.view_job", "jobs.add_job"}


def test_superusers_and_other_backends_keep_djangos_own_permission_checks(
    user, client_for, make_user, settings
):
    from django.contrib.auth.models import Permission

    assert client_for(user).post("/api/jobs", {"task": "echo"}, format="json").status_code == 201
    assert client_for(user).get("/api/jobs").status_code == 200
    assert _token_user(user).get_all_permissions() == {
        f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.all()
    }
    settings.AUTHENTICATION_BACKENDS = ["tests.test_permissions.NoJobsBackend"]
    adder = make_user("add")
    assert client_for(adder).post("/api/jobs", {"task": "echo"}, format="json").status_code == 403


class NoJobsBackend(ModelBackend):
    """A backend that takes the job permissions away: the API must ask it."""

    def get_all_permissions(self, user_obj, obj=None):
        return {p for p in super().get_all_permissions(user_obj, obj) if not p.endswith("_job")}

    def has_perm(self, user_obj, perm, obj=None):
        return perm in self.get_all_permissions(user_obj, obj)


# -- the admin --------------------------------------------------------------------------

CHANGELIST = "/admin/jobs/job/"


def _action(client, action, job):
    data = {"action": action, "_selected_action": [str(job.pk)], "index": 0, "post": "yes"}
    return client.post(CHANGELIST, data, follow=True)


ADMIN_ACTIONS = [
    ("cancel_jobs", "change", Status.QUEUED, Status.CANCELLED),
    ("retry_jobs", "change", Status.CANCELLED, Status.QUEUED),
]


@pytest.mark.parametrize(("action", "verb", "start", "end"), ADMIN_ACTIONS)
def test_admin_actions_need_change_permission(
    client, make_user, make_job, action, verb, start, end
):
    job = _job(make_job, start)
    client.force_login(make_user("view", "add", "delete", staff=True, name="no-change"))
    _action(client, action, job)
    assert Job.objects.get(pk=job.pk).status == start
    client.force_login(make_user("view", verb, staff=True, name="with-change"))
    response = _action(client, action, job)
    assert response.status_code == 200
    assert Job.objects.get(pk=job.pk).status == end


def test_admin_delete_action_needs_delete_permission(client, make_user, make_job):
    job = make_job()
    client.force_login(make_user("view", "change", staff=True, name="no-delete"))
    _action(client, "delete_selected", job)
    assert Job.objects.filter(pk=job.pk).exists()
    client.force_login(make_user("view", "delete", staff=True, name="with-delete"))
    _action(client, "delete_selected", job)
    assert not Job.objects.filter(pk=job.pk).exists()


@pytest.mark.parametrize(
    ("path", "verb"),
    [
        ("/admin/jobs/job/", "view"),
        ("/admin/jobs/job/add/", "add"),
        ("/admin/jobs/job/{id}/delete/", "delete"),
    ],
)
def test_admin_pages_need_their_permission(client, make_user, make_job, path, verb):
    job = make_job()
    url = path.format(id=job.pk)
    others = [v for v in VERBS if v != verb and not (verb == "view" and v == "change")]
    client.force_login(make_user(*others, staff=True, name="others"))
    assert client.get(url).status_code == 403
    client.force_login(make_user(verb, staff=True, name="holder"))
    assert client.get(url).status_code == 200


def test_admin_change_form_needs_change_permission(client, make_user, make_job):
    job = make_job(payload="before")
    url = f"/admin/jobs/job/{job.pk}/change/"
    changer = make_user("view", "change", staff=True, name="changer")
    client.force_login(changer)
    form = {**page_form(client.get(url)), "payload": '"after"', "_save": "Save"}
    client.force_login(make_user("view", staff=True, name="viewer"))
    assert client.post(url, form).status_code == 403
    assert Job.objects.get(pk=job.pk).payload == "before"
    client.force_login(changer)
    assert client.post(url, form).status_code == 302
    assert Job.objects.get(pk=job.pk).payload == "after"


def test_tokens_are_created_and_revoked_in_the_admin(admin_client, make_user, anon):
    user = make_user("view")
    response = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk})
    assert response.status_code == 302
    token = Token.objects.get(user=user)
    anon.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert anon.get("/api/jobs").status_code == 200
    delete = f"/admin/authtoken/tokenproxy/{user.pk}/delete/"
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert anon.get("/api/jobs").status_code == 401


def test_token_admin_is_closed_to_staff_without_token_permissions(client, make_user):
    client.force_login(make_user("view", "add", "change", "delete", staff=True))
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 403
    assert client.get("/admin/authtoken/tokenproxy/add/").status_code == 403


def test_a_known_idempotency_key_shows_the_job_only_to_who_may_view_it(make_user, client_for):
    """Without view permission a known key is a 409 naming the job's id, nothing of its
    contents; with it, the existing job (200). No second job either way."""
    owner = client_for(make_user("add", "view", name="owner"))
    spec = {"task": "echo", "payload": {"card": "4111-secret"}, "idempotency_key": "order-42"}
    job_id = owner.post("/api/jobs", spec, format="json").json()["id"]

    same_key = {"task": "echo", "idempotency_key": "order-42"}
    adder = client_for(make_user("add"))
    response = adder.post("/api/jobs", same_key, format="json")
    assert response.status_code == 409, response.content
    assert response.json() == {
        "detail": "An unfinished job already holds this idempotency_key.",
        "code": "conflict",
        "id": job_id,
    }
    assert adder.get(f"/api/jobs/{job_id}").status_code == 403

    viewer = client_for(make_user("add", "view", name="viewer"))
    again = viewer.post("/api/jobs", same_key, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == job_id and again.json()["payload"] == {"card": "4111-secret"}
    assert Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_token_request_survives_a_dropped_database_connection(make_user, client_for):
    """The token query checks a reused connection itself: a dropped one is replaced."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("needs a server that can drop a connection")
    assert connection.health_check_enabled is not False  # the service's setting
    client = client_for(make_user("add"))
    assert client.post("/api/jobs", {"task": "echo"}, format="json").status_code == 201
    pid = _server_id(connection)
    with other_connection() as other:  # pg_terminate_backend, or KILL on MySQL
        if connection.vendor == "mysql":
            other.cursor().execute(f"KILL CONNECTION {int(pid)}")
        else:
            other.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
    assert client.post("/api/jobs", {"task": "echo"}, format="json").status_code == 201
    assert _server_id(connection) != pid
    assert Job.objects.count() == 2


def _server_id(connection: Any) -> int:
    """The server's id of ``connection``'s session (PostgreSQL's backend pid, MySQL's
    connection id)."""
    if connection.vendor == "mysql":
        return connection.connection.thread_id()
    return connection.connection.info.backend_pid


def test_token_users_get_permissions_created_or_renamed_after_the_first_request(
    make_user, client_for
):
    """Permission names are kept per process: a new id is read, a rename here forgets them."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    user = make_user("add")
    client_for(user)  # makes its token
    assert _token_user(user).get_all_permissions() == {"jobs.add_job"}
    extra = Permission.objects.create(
        codename="export_job",
        name="Can export",
        content_type=ContentType.objects.get_for_model(Job),
    )
    user.user_permissions.add(extra)
    assert _token_user(user).get_all_permissions() == {"jobs.add_job", "jobs.export_job"}
    extra.codename = "archive_job"
    extra.save()
    assert _token_user(user).get_all_permissions() == {"jobs.add_job", "jobs.archive_job"}
    extra.delete()
    assert _token_user(user).get_all_permissions() == {"jobs.add_job"}
