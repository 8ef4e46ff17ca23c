"""The job admin: columns, filters, search, the change page, status edits and actions."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from jobs import lifecycle, tasks
from jobs.models import Job, JobAttempt, Status, Worker
from tests.admin_helpers import CHANGELIST, act, change_url, page_form, shown
from tests.helpers import ALL, one_of_each, put_in

pytestmark = pytest.mark.django_db

# -- the changelist --------------------------------------------------------------------------


def test_changelist_shows_badges_attempts_worker_and_age(admin_client, make_job):
    jobs = one_of_each(make_job)
    page = shown(admin_client.get(CHANGELIST))
    for status in ALL:
        assert f'class="job-badge status-{status}"' in page
    assert "1/1" in page  # attempts of max
    assert "w1" in page  # the worker of the processing job
    assert str(jobs[Status.DONE].pk)[:8] in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", {Status.FAILED}),
        ("has_error=yes", {Status.FAILED}),
        ("has_error=no", set(ALL) - {Status.FAILED}),
        ("queue=other", {Status.QUEUED}),
        ("task=noop", {Status.QUEUED}),
        ("finished_at__isnull=False", {Status.DONE, Status.FAILED, Status.CANCELLED}),
    ],
)
def test_filters(admin_client, make_job, query, expected):
    jobs = one_of_each(make_job)
    Job.objects.filter(pk=jobs[Status.QUEUED].pk).update(queue="other", task="noop")
    result = admin_client.get(f"{CHANGELIST}?{query}").context["cl"].result_list
    assert {job.status for job in result} == expected


def test_the_queue_filter_lists_queued_flow_controlled_and_task_queues(admin_client, make_job):
    from jobs.models import Queue
    from jobs.observability.stats import queued_queues

    for queue in ["b", "a", "b", "c"]:
        make_job(queue=queue)
    done = make_job(queue="finished-only")
    Job.objects.filter(pk=done.pk).update(status=Status.DONE)
    Queue.objects.create(name="paused-one", paused=True)
    assert queued_queues() == {"a", "b", "c"}
    page = shown(admin_client.get(CHANGELIST))
    for queue in ["a", "b", "c", "paused-one", "default"]:
        assert f"?queue={queue}" in page
    assert "?queue=finished-only" not in page


def test_created_range_filter_and_date_hierarchy(admin_client, make_job):
    old, new = make_job(), make_job()
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    since = timezone.now() - timedelta(days=7)
    response = admin_client.get(CHANGELIST, {"created_at__gte": str(since)})
    assert [j.pk for j in response.context["cl"].result_list] == [new.pk]
    now = timezone.now()
    page = shown(admin_client.get(f"{CHANGELIST}?created_at__year={now.year}"))
    assert f"created_at__month={now.month}" in page  # a month link in the hierarchy
    page = shown(
        admin_client.get(f"{CHANGELIST}?created_at__year={now.year}&created_at__month={now.month}")
    )
    assert f"created_at__day={now.day}" in page


def test_search_by_id_payload_and_error(admin_client, make_job):
    failed = put_in(Status.FAILED, make_job)
    needle = make_job(payload={"customer": "zebra-42"})
    Job.objects.filter(pk=failed.pk).update(error="ValueError: upstream teapot")
    make_job(payload="other")

    def found(term: str) -> set:
        return {j.pk for j in admin_client.get(CHANGELIST, {"q": term}).context["cl"].result_list}

    assert found(str(needle.pk)) == {needle.pk}
    assert found(str(needle.pk)[:8]) == {needle.pk}  # the short id the list shows
    assert found(str(needle.pk)[:13].upper()) == {needle.pk}
    assert found("zebra-42") == {needle.pk}
    assert found("teapot") == {failed.pk}
    assert found("nothing-matches") == set()


def test_a_text_search_reads_the_newest_jobs_of_the_list_and_says_so(
    admin_client, make_job, monkeypatch
):
    from jobs.admin import jobs as job_admin

    monkeypatch.setattr(job_admin, "SEARCH_ROWS", 3)
    old = make_job(payload={"customer": "zebra-1"}, queue="mail")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    newer = [make_job(payload={"customer": f"zebra-{n}"}) for n in (2, 3, 4)]

    def found(**query: str) -> tuple[set, list[str]]:
        response = admin_client.get(CHANGELIST, {"q": "zebra", **query})
        notes = [str(m) for m in get_messages(response.wsgi_request)]
        return {j.pk for j in response.context["cl"].result_list}, notes

    hits, notes = found()
    assert hits == {job.pk for job in newer}  # the newest 3 only
    assert len(notes) == 1 and "newest 3 jobs of this list (created since" in notes[0]
    assert found(queue="mail") == ({old.pk}, [])  # a filter reaches the older one
    assert found(q=str(old.pk))[0] == {old.pk}  # an id is looked up, never bounded
    monkeypatch.setattr(job_admin, "SEARCH_MATCHES", 2)
    hits, notes = found()
    assert hits == {job.pk for job in newer[1:]}  # the newest 2 matches of the 3
    assert "Listing the newest 2 matches" in notes[1]


def test_a_text_search_finds_non_ascii_payload_text(admin_client, make_job):
    """SQLite and MariaDB keep payloads as JSON text with non-ASCII characters escaped;
    the search finds them all the same, and in errors as written."""
    café = make_job(payload={"customer": "Café Zoë 🍰"})
    make_job(payload={"customer": "Cafe Zoe"})
    for term in ["Café", "zoë", "🍰"]:
        response = admin_client.get(CHANGELIST, {"q": term})
        found = [job.pk for job in response.context["cl"].result_list]
        if connection.vendor == "mysql" and term != "🍰":
            assert café.pk in found, term  # its default collation ignores accents: Cafe too
        else:
            assert found == [café.pk], term


@pytest.mark.parametrize(
    ("column", "ordering"),
    [
        ("2", ["status", "-created_at", "-pk"]),
        ("-2", ["-status", "created_at", "pk"]),
        ("3", ["task", "-created_at", "-pk"]),
        ("4", ["queue", "-created_at", "-pk"]),
        ("9", ["created_at", "-pk"]),
        ("-1", ["-id"]),
        ("10", ["-created_at", "-pk"]),  # run after: no index, so the default order
        ("5", ["-created_at", "-pk"]),  # priority: likewise
    ],
)
def test_the_list_sorts_only_along_an_index(admin_client, make_job, column, ordering):
    make_job()
    changelist = admin_client.get(CHANGELIST, {"o": column}).context["cl"]
    assert list(changelist.queryset.query.order_by) == ordering
    headers = shown(admin_client.get(CHANGELIST))
    assert headers.count('class="sortable') == 5  # id, status, task, queue, age


# -- the change page -------------------------------------------------------------------------


def test_change_page_shows_json_traceback_history_progress_lease_and_worker(admin_client, make_job):
    make_job(payload={"to": "a@b.c", "n": [1, 2]}, max_attempts=3)
    (job,) = lifecycle.claim(worker_id="w-busy")
    trace = "Traceback: line 1\nKeyError: first"
    lifecycle.fail(job=job, worker_id="w-busy", error="E1", traceback=trace)
    Job.objects.filter(pk=job.pk).update(run_after=None, traceback=None)
    (job,) = lifecycle.claim(worker_id="w-busy")
    Job.objects.filter(pk=job.pk).update(progress=40, progress_message="halfway", result={"k": 1})
    now = timezone.now()
    Worker.objects.create(id="w-busy", hostname="h", pid=1, started_at=now, last_heartbeat_at=now)
    page = shown(admin_client.get(change_url(job)))
    assert "\n  &quot;to&quot;: &quot;a@b.c&quot;" in page  # payload as indented JSON
    assert "{\n  &quot;k&quot;: 1\n}" in page  # result pretty-printed
    assert 'value="40"' in page and "halfway" in page
    assert reverse("admin:jobs_worker_change", args=["w-busy"]) in page
    assert "UTC, in " in page  # the lease, with time left
    assert "Attempt history" in page and "attempt 1: failed" in page
    # The attempt's traceback, folded under its last line.
    assert '<summary>KeyError: first</summary><pre class="job-pre">Traceback: line 1\n' in page


@pytest.mark.parametrize(("current", "target"), [(a, b) for a in ALL for b in ALL if a != b])
def test_status_edit_goes_through_the_lifecycle(admin_client, make_job, current, target):
    job = put_in(current, make_job)
    form = page_form(admin_client.get(change_url(job)))
    response = admin_client.post(change_url(job), {**form, "status": target, "_save": "Save"})
    job.refresh_from_db()
    if (current, target) in lifecycle.MANUAL_TRANSITIONS:
        assert response.status_code == 302
        assert job.status == target
    else:
        assert response.status_code == 200  # the form again, with the refusal
        errors = response.context["adminform"].form.errors["status"]
        assert f"A {current} job cannot be set to {target}" in errors[0]
        assert job.status == current


def test_edit_without_status_change_keeps_fields_and_status(admin_client, make_job):
    job = make_job(payload={"a": 1})
    form = page_form(admin_client.get(change_url(job)))
    edits = {"payload": '{"a": 2}', "queue": "mail", "priority": 5, "max_attempts": 4}
    assert admin_client.post(change_url(job), {**form, **edits, "_save": "Save"}).status_code == 302
    job.refresh_from_db()
    assert (job.payload, job.queue, job.priority, job.status) == ({"a": 2}, "mail", 5, "queued")


def test_a_post_without_the_page_it_was_opened_from_changes_nothing(admin_client, make_job):
    """A post that does not say what status it was opened on is refused, not guessed."""
    job = make_job()
    form = {"status": Status.CANCELLED, "payload": "null", "queue": "default", "priority": 0}
    form |= {"max_attempts": 3, "history-TOTAL_FORMS": 0, "history-INITIAL_FORMS": 0}
    response = admin_client.post(change_url(job), form)
    assert response.status_code == 200 and "This page is out of date" in shown(response)
    assert Job.objects.get(pk=job.pk).status == Status.QUEUED


def test_add_enqueues_through_the_lifecycle(admin_client):
    form = {
        "task": "echo",
        "payload": '"hi"',
        "queue": "default",
        "priority": 0,
        "max_attempts": 2,
        "history-TOTAL_FORMS": 0,
        "history-INITIAL_FORMS": 0,
    }
    response = admin_client.post(reverse("admin:jobs_job_add"), form)
    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.task, job.payload, job.status) == ("echo", "hi", Status.QUEUED)


def test_add_refuses_unknown_task(admin_client):
    form = {"task": "nope", "payload": "1", "queue": "default", "priority": 0, "max_attempts": 1}
    form |= {"history-TOTAL_FORMS": 0, "history-INITIAL_FORMS": 0}
    response = admin_client.post(reverse("admin:jobs_job_add"), form)
    assert response.status_code == 200 and "unknown task" in shown(response)
    assert not Job.objects.exists()


# -- actions: every guard --------------------------------------------------------------------

ACTIONS = {
    # action -> (statuses it changes, what a changed job becomes, word in the message)
    "cancel_jobs": (
        {Status.QUEUED, Status.PROCESSING, Status.WAITING},
        Status.CANCELLED,
        "cancelled",
    ),
    "retry_jobs": ({Status.FAILED, Status.CANCELLED, Status.DONE}, Status.QUEUED, "requeued"),
    "run_next": ({Status.QUEUED}, Status.QUEUED, "moved to the front"),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("status", ALL)
def test_action_guard_on_each_status(admin_client, make_job, action, status):
    """An action changes a job its guard allows, and skips (and reports) any other."""
    job = put_in(status, make_job)
    allowed, becomes, word = ACTIONS[action]
    shown_messages, _ = act(admin_client, action, [job])
    job.refresh_from_db()
    if status in allowed:
        assert shown_messages == [f"1 job {word}."]
        assert job.status == becomes
    else:
        assert shown_messages[0].startswith(f"0 jobs {word}. 1 skipped: 1 {status} (")
        assert job.status == status


def test_bulk_action_reports_changed_and_skipped_by_status(admin_client, make_job):
    jobs = one_of_each(make_job)
    shown_messages, _ = act(admin_client, "cancel_jobs", jobs.values())
    assert shown_messages == [
        "3 jobs cancelled. 3 skipped: 1 cancelled, 1 done, 1 failed "
        "(only queued, waiting or processing jobs are cancelled)."
    ]
    # The running attempt is archived.
    assert JobAttempt.objects.filter(job=jobs[Status.PROCESSING], outcome="cancelled").exists()


def test_run_next_moves_a_queued_job_to_the_front(admin_client, make_job):
    make_job(priority=10)
    later = make_job(run_after=timezone.now() + timedelta(hours=2))
    act(admin_client, "run_next", [later])
    (claimed,) = lifecycle.claim(worker_id="w")
    assert claimed.pk == later.pk


def test_action_across_all_filtered_rows(admin_client, make_job):
    """'Select all' acts on every job the filters match, after a confirmation page that
    shows the count by status."""
    failed = [put_in(Status.FAILED, make_job) for _ in range(3)]
    put_in(Status.DONE, make_job)
    queued = make_job()
    shown_messages, response = act(
        admin_client, "retry_jobs", failed[:1], query="status__exact=failed", select_across=1
    )
    assert shown_messages == []
    assert "3 jobs match this filter" in shown(response)
    assert Job.objects.filter(status=Status.QUEUED).count() == 1  # nothing changed yet
    shown_messages, _ = act(
        admin_client,
        "retry_jobs",
        failed[:1],
        query="status__exact=failed",
        select_across=1,
        confirmed="yes",
    )
    assert shown_messages == ["3 jobs requeued in 1 batch."]
    assert Job.objects.filter(status=Status.QUEUED).count() == 4
    shown_messages, _ = act(
        admin_client, "cancel_jobs", [queued], query="q=zzz", select_across=1, confirmed="yes"
    )
    assert shown_messages == ["0 jobs cancelled."]  # the search matched nothing


@pytest.mark.parametrize(
    ("action", "status", "after"),
    [
        ("retry_jobs", Status.FAILED, Status.QUEUED),
        ("cancel_jobs", Status.QUEUED, Status.CANCELLED),
        ("run_next", Status.QUEUED, Status.QUEUED),
        ("delete_selected", Status.FAILED, None),
    ],
)
def test_apply_to_all_goes_beyond_max_bulk_in_batches(
    admin_client, make_job, settings, action, status, after
):
    """More matching jobs than JOBS_MAX_BULK: the confirmed action handles every one, in
    batches of JOBS_MAX_BULK, and says how many changed and in how many batches."""
    settings.JOBS_MAX_BULK = 2
    put_in(Status.DONE, make_job)  # outside the filter
    jobs = [put_in(status, make_job) for _ in range(5)]
    query = f"status__exact={status}"
    _, response = act(admin_client, action, jobs[:1], query=query, select_across=1)
    assert "5 jobs match this filter" in shown(response)
    shown_messages, _ = act(
        admin_client, action, jobs[:1], query=query, select_across=1, confirmed="yes"
    )
    assert len(shown_messages) == 1 and "5 jobs" in shown_messages[0]
    assert "in 3 batches." in shown_messages[0]
    left = Job.objects.filter(pk__in=[j.pk for j in jobs])
    if after is None:
        assert not left.exists()
    else:
        assert set(left.values_list("status", flat=True)) == {after}
    if action == "run_next":
        assert set(left.values_list("priority", flat=True)) == {100}
    assert Job.objects.filter(status=Status.DONE).count() == 1


def test_selected_rows_past_max_bulk_are_refused_without_select_all(
    admin_client, make_job, settings
):
    settings.JOBS_MAX_BULK = 2
    jobs = [put_in(Status.FAILED, make_job) for _ in range(3)]
    shown_messages, _ = act(admin_client, "retry_jobs", jobs)
    assert "3 jobs selected" in shown_messages[0] and "Nothing changed" in shown_messages[0]


def test_changelist_queries_do_not_grow_with_rows(
    admin_client, make_job, django_assert_max_num_queries
):
    for _ in range(5):
        one_of_each(make_job)
    with django_assert_max_num_queries(12):
        assert admin_client.get(CHANGELIST).status_code == 200


@pytest.mark.parametrize("status", ALL)
def test_delete_action_confirms_then_skips_running_jobs(admin_client, make_job, status):
    job = put_in(status, make_job)
    _, confirm = act(admin_client, "delete_selected", [job])
    assert confirm.status_code == 200 and "Are you sure" in shown(confirm)
    assert Job.objects.filter(pk=job.pk).exists()
    shown_messages, _ = act(admin_client, "delete_selected", [job], post="yes")
    if status == Status.PROCESSING:
        assert shown_messages[0].startswith("0 jobs deleted. 1 skipped: 1 processing")
        assert Job.objects.filter(pk=job.pk).exists()
    else:
        assert shown_messages == ["1 job deleted."]
        assert not Job.objects.filter(pk=job.pk).exists()


def test_running_job_has_no_delete_button(admin_client, make_job):
    make_job()
    (job,) = lifecycle.claim(worker_id="w")
    assert admin_client.get(reverse("admin:jobs_job_delete", args=[job.pk])).status_code == 403


def test_action_from_the_change_page(admin_client, make_job):
    job = put_in(Status.FAILED, make_job)
    data = {"CHANGE_FORM-action": "retry_jobs", "_selected_action": [str(job.pk)]}
    response = admin_client.post(change_url(job), data)
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 job requeued."]
    job.refresh_from_db()
    assert job.status == Status.QUEUED


# -- a page opened before the job moved (issue 12, point 9) ---------------------------------


def finish(job: Job) -> None:
    """A worker claims the job and finishes it, as happens while an operator reads its page."""
    (claimed,) = lifecycle.claim(worker_id="w-meanwhile")
    assert claimed.pk == job.pk
    lifecycle.succeed(job=claimed, worker_id="w-meanwhile", result="ran")


def save(client, job: Job, form: dict, **edits) -> tuple[list[str], Job]:
    """Post ``form`` (a page as it was rendered) with the operator's ``edits``; return the
    messages shown on the page that follows, and the job as it is now."""
    response = client.post(change_url(job), {**form, **edits, "_save": "Save"}, follow=True)
    assert response.status_code == 200
    shown_messages = [str(m) for m in get_messages(response.wsgi_request)]
    return shown_messages, Job.objects.get(pk=job.pk)


MEANWHILE = {
    "finished": finish,
    "claimed": lambda job: lifecycle.claim(worker_id="w-meanwhile"),
    "cancelled": lambda job: lifecycle.cancel(job_id=job.pk),
}
EDITS = {
    "priority": {"priority": "7"},
    "queue": {"queue": "elsewhere"},
    "max_attempts": {"max_attempts": "9"},
    "run_after": {"run_after_0": "2031-01-02", "run_after_1": "03:04:05"},
    "payload": {"payload": '{"a": 2}'},
    "status": {"status": Status.CANCELLED},
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("meanwhile", sorted(MEANWHILE))
def test_a_page_opened_before_the_job_moved_changes_nothing(
    admin_client, make_job, meanwhile, edit
):
    """The issue's case: a stale page of a queued job must not run the job again (the
    unchanged status field is no request to requeue) nor edit a job no longer queued."""
    job = make_job(payload={"a": 1})
    form = page_form(admin_client.get(change_url(job)))
    MEANWHILE[meanwhile](job)
    before = Job.objects.get(pk=job.pk)
    shown_messages, after = save(admin_client, job, form, **EDITS[edit])
    assert any("changed since you opened it" in m for m in shown_messages), shown_messages
    assert not any("successfully" in m for m in shown_messages)
    fields = ["status", "attempts", "priority", "queue", "max_attempts", "run_after", "payload"]
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields]
    assert not LogEntry.objects.exists()  # no "changed" entry in the admin's history


def test_the_issue_case_does_not_run_the_job_twice(admin_client, make_job):
    job = make_job(payload={"a": 1})
    form = page_form(admin_client.get(change_url(job)))
    finish(job)
    shown_messages, after = save(admin_client, job, form, priority="5")
    assert (after.status, after.attempts, after.priority) == (Status.DONE, 1, 0)
    assert shown_messages == [
        "This job changed since you opened it: it is now done. Nothing was changed; "
        "the page shows it as it is now."
    ]
    assert lifecycle.claim(worker_id="w-again") == []


def test_only_the_fields_the_operator_changed_are_written(admin_client, make_job):
    """Another operator's edit of a field this page did not touch survives this save."""
    job = make_job(payload={"a": 1})
    form = page_form(admin_client.get(change_url(job)))
    act(admin_client, "run_next", [job])  # meanwhile: priority 100, same status
    shown_messages, after = save(admin_client, job, form, payload='{"a": 2}')
    assert len(shown_messages) == 1 and "was changed successfully" in shown_messages[0]
    assert (after.payload, after.priority, after.status) == ({"a": 2}, 100, Status.QUEUED)


def test_a_status_edit_on_a_fresh_page_goes_through(admin_client, make_job):
    job = make_job()
    finish(job)
    form = page_form(admin_client.get(change_url(job)))
    _, after = save(admin_client, job, form, status=Status.QUEUED, priority="3")
    assert (after.status, after.priority) == (Status.QUEUED, 3)


def test_a_page_shown_again_after_an_error_keeps_the_status_it_was_opened_with(
    admin_client, make_job
):
    """Fixing an error on the page shown again must not turn the stale status into a request."""
    job = make_job()
    form = page_form(admin_client.get(change_url(job)))
    finish(job)
    again = admin_client.post(change_url(job), {**form, "priority": "x", "_save": "Save"})
    assert again.status_code == 200 and again.context["adminform"].form.errors
    shown_messages, after = save(admin_client, job, page_form(again), priority="5")
    assert any("changed since you opened it" in m for m in shown_messages)
    assert (after.status, after.attempts, after.priority) == (Status.DONE, 1, 0)


# -- adding a job (issue 12, point 11) --------------------------------------------------------

ADD = reverse("admin:jobs_job_add")


@tasks.register("test.own_defaults", queue="media", priority=5, max_attempts=7, timeout=9.5)
def own_defaults(payload):
    return payload


@pytest.mark.parametrize("button", ["_save", "_continue", "_addanother"])
def test_add_names_and_links_the_job_it_created(admin_client, button):
    form = page_form(admin_client.get(ADD))
    response = admin_client.post(ADD, {**form, "task": "echo", "payload": '"hi"', button: "1"})
    job = Job.objects.get()
    assert response.status_code == 302
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert str(job.pk) in message and change_url(job) in message
    if button == "_continue":
        assert response.url.startswith(change_url(job))
        assert admin_client.get(response.url).status_code == 200
    entry = LogEntry.objects.get()
    assert entry.object_id == str(job.pk)


def test_add_form_leaves_the_task_defaults_blank(admin_client):
    form = page_form(admin_client.get(ADD))
    assert [form[f] for f in ("queue", "priority", "max_attempts", "timeout")] == ["", "", "", ""]


@pytest.mark.parametrize(
    ("task", "payload", "expected"),
    [
        ("test.own_defaults", "1", ("media", 5, 7, 9.5)),
        (
            "send_email",
            '{"to": "a@example.com", "subject": "s", "body": "b"}',
            ("default", 0, 5, None),
        ),
        ("echo", "1", ("default", 0, 3, None)),
    ],
)
def test_add_with_blanks_takes_the_task_defaults(admin_client, task, payload, expected):
    form = page_form(admin_client.get(ADD))
    response = admin_client.post(ADD, {**form, "task": task, "payload": payload, "_save": "1"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get()
    assert (job.queue, job.priority, job.max_attempts, job.timeout) == expected


def test_add_with_values_overrides_the_task_defaults(admin_client):
    form = page_form(admin_client.get(ADD))
    form |= {"task": "test.own_defaults", "payload": "1", "queue": "q", "priority": "-3"}
    form |= {"max_attempts": "2", "timeout": "4", "_save": "1"}
    assert admin_client.post(ADD, form).status_code == 302
    job = Job.objects.get()
    assert (job.queue, job.priority, job.max_attempts, job.timeout) == ("q", -3, 2, 4.0)


def test_add_shows_payload_errors_per_field_in_words(admin_client):
    form = page_form(admin_client.get(ADD))
    form |= {"task": "send_email", "payload": '{"to": ["a@example.com", "nope"]}', "_save": "1"}
    response = admin_client.post(ADD, form)
    assert response.status_code == 200 and not Job.objects.exists()
    errors = response.context["adminform"].form.errors["payload"]
    assert errors == [
        "to.1: Enter a valid email address.",
        "subject: This field is required.",
        "body: This field is required.",
    ]
    assert "ErrorDetail" not in shown(response)
