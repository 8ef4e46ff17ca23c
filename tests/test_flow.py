"""Flow control in the claim: paused queues, concurrency per queue and per key, rate limits.

Claim-level tests on the real database; the same limits across real worker
processes are in tests/test_flow_processes.py.
"""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import lifecycle
from jobs.conf import conf, parse_rate
from jobs.lifecycle import flow
from jobs.models import Job, Queue, RateSlot, Status
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_flow_state() -> None:
    """Each test starts from its own database's flow state, not the last test's cache."""
    flow.state(refresh=True)


def claim(limit: int = 100, **options) -> list[Job]:
    return lifecycle.claim(worker_id="w", limit=limit, **options)


def finish(jobs) -> None:
    for job in jobs:
        lifecycle.succeed(job=job, worker_id="w", result=None)


class TestPause:
    def test_a_paused_queue_is_not_claimed_until_resumed(self, make_job):
        mail = [make_job(queue="mail") for _ in range(3)]
        other = make_job(queue="other")
        claim(limit=0)  # the flow state is now cached: the pause must still be seen
        lifecycle.pause_queue(name="mail")
        assert [job.pk for job in claim()] == [other.pk]
        make_job(queue="mail")  # enqueueing still works
        lifecycle.resume_queue(name="mail")
        assert {job.pk for job in claim()} >= {job.pk for job in mail}

    def test_pause_is_stored_and_running_jobs_are_left_alone(self, make_job):
        make_job(queue="mail")
        (running,) = claim()
        lifecycle.pause_queue(name="mail")
        assert Queue.objects.get(name="mail").paused
        finish([running])
        assert Job.objects.get(pk=running.pk).status == Status.DONE

    def test_waiting_for_says_paused(self, make_job):
        job = make_job(queue="mail")
        lifecycle.pause_queue(name="mail")
        assert lifecycle.waiting_for(job) == "queue mail is paused"
        lifecycle.resume_queue(name="mail")
        assert lifecycle.waiting_for(job) == ""


class TestQueueConcurrency:
    def test_at_most_n_processing_and_a_finished_job_frees_its_slot(self, make_job):
        Queue.objects.create(name="mail", concurrency=2)
        for _ in range(5):
            make_job(queue="mail")
        first = claim()
        assert len(first) == 2
        assert claim() == []
        job = make_job(queue="mail")
        assert lifecycle.waiting_for(job) == "queue mail at its concurrency limit 2"
        finish(first[:1])
        assert len(claim()) == 1

    def test_settings_limit_and_the_stored_value_wins(self, make_job, settings):
        settings.JOBS_QUEUES = {"mail": {"concurrency": 1}}
        for _ in range(4):
            make_job(queue="mail")
        assert len(claim()) == 1
        Queue.objects.filter(name="mail").update(concurrency=3)  # the admin's edit
        assert len(claim()) == 2

    def test_a_recovered_job_gives_its_slot_back(self, make_job):
        Queue.objects.create(name="mail", concurrency=1)
        make_job(queue="mail")
        make_job(queue="mail")
        assert len(claim(lease_seconds=0.01)) == 1
        assert claim() == []
        assert lifecycle.recover(now=timezone.now() + timedelta(seconds=1)) == 1
        assert len(claim()) == 1

    def test_unlimited_queues_still_claim_beside_a_limited_one(self, make_job):
        Queue.objects.create(name="mail", concurrency=1)
        for _ in range(3):
            make_job(queue="mail")
            make_job(queue="other")
        claimed = claim()
        assert sorted(job.queue for job in claimed) == ["mail", "other", "other", "other"]


class TestKeys:
    def test_one_per_key_by_default(self, make_job):
        jobs = [make_job(concurrency_key=key) for key in "aaabbc"]
        claimed = claim()
        assert sorted(job.concurrency_key for job in claimed) == ["a", "b", "c"]
        assert lifecycle.waiting_for(jobs[1]) == "key a at its limit 1"
        finish(claimed)
        assert sorted(job.concurrency_key for job in claim()) == ["a", "b"]

    def test_the_task_derives_the_key_and_sets_its_limit(self, make_job):
        jobs = [make_job(task="test.per_account", payload={"account": i % 2}) for i in range(6)]
        assert jobs[0].concurrency_key == "account:0"
        assert len(claim()) == 4  # two per account

    def test_the_queue_limit_per_key_wins_over_the_task(self, make_job):
        Queue.objects.create(name="sync", key_concurrency=1)
        for i in range(4):
            make_job(task="test.per_account", queue="sync", payload={"account": i % 2})
        assert len(claim()) == 2

    def test_a_key_too_long_is_refused(self, make_job):
        from jobs.exceptions import InvalidJob

        with pytest.raises(InvalidJob) as refused:
            make_job(concurrency_key="k" * 201)
        assert "concurrency_key" in refused.value.errors


class TestTaskLimit:
    """``register(concurrency=N)``: at most N of a task's jobs processing at once."""

    def test_at_most_n_of_the_task_whatever_the_queue(self, make_job):
        jobs = [make_job(task="test.span_limited", queue=f"q{i % 3}") for i in range(6)]
        make_job()  # another task beside them: not limited
        assert jobs[0].concurrency_key == "task:test.span_limited"
        claimed = claim()
        assert sorted(job.task for job in claimed) == ["echo", *["test.span_limited"] * 3]
        waiting = next(job for job in jobs if job.pk not in {c.pk for c in claimed})
        assert lifecycle.waiting_for(waiting) == "task test.span_limited at its concurrency limit 3"
        finish([job for job in claimed if job.task == "test.span_limited"][:1])
        assert len(claim()) == 1  # one of the task's three slots came back

    def test_with_keys_of_its_own_both_limits_hold(self, make_job):
        from tests.django_tasks import sync_account

        for account in [1, 1, 2, 3]:
            sync_account.enqueue(account)
        keys = sorted(Job.objects.values_list("concurrency_key", flat=True))
        assert keys == ["account:1", "account:1", "account:2", "account:3"]
        claimed = claim()
        assert len(claimed) == 2  # concurrency=2 in all
        assert len({job.concurrency_key for job in claimed}) == 2  # one per account
        finish(claimed)
        assert len(claim()) == 2

    def test_inside_a_limited_queue(self, make_job):
        Queue.objects.create(name="mail", concurrency=5)
        for _ in range(6):
            make_job(task="test.span_limited", queue="mail")
        assert len(claim()) == 3

    def test_jobs_queued_before_the_limit_are_keyed_when_a_worker_starts(self, make_job):
        Job.objects.bulk_create([Job(task="test.span_limited") for _ in range(5)])
        assert len(claim(limit=1)) == 1  # unkeyed: the plain claim takes them
        assert lifecycle.key_limited_jobs() == 5  # the processing one counts too
        assert len(claim()) == 2  # 3 in all with the one processing
        assert lifecycle.key_limited_jobs() == 0

    def test_a_limit_removed_leaves_the_task_key_without_effect(self, make_job):
        for _ in range(4):
            make_job(task="echo", concurrency_key="task:echo")  # as a limited task's jobs are
        assert len(claim()) == 4  # echo has no limit now: its task key holds nothing back

    def test_a_freed_slot_wakes_idle_workers(self, make_job):
        if connection.vendor != "postgresql":
            pytest.skip("LISTEN/NOTIFY is a PostgreSQL feature")
        from jobs.notify import Listener

        make_job(task="test.span_limited", queue="slow")
        (job,) = claim()
        listening = Listener()
        try:
            assert listening.fileno() is not None  # connects and listens
            finish([job])
            assert wait_for(lambda: "slow" in listening.drain(), timeout=10)
        finally:
            listening.close()

    def test_limits_are_checked(self):
        from django.tasks.exceptions import InvalidTask

        from jobs.backends import task
        from jobs.tasks import register

        with pytest.raises(ValueError, match="concurrency=0"):
            register("x", concurrency=0)
        with pytest.raises(InvalidTask, match="key_concurrency"):
            task(key_concurrency=True)
        with pytest.raises(InvalidTask, match="concurrency_key"):
            task(concurrency_key="account")


class TestRate:
    def test_at_most_n_starts_per_period_and_the_next_due_time(self, make_job):
        Queue.objects.create(name="mail", rate="3/s")
        jobs = [make_job(queue="mail") for _ in range(5)]
        claimed = claim()
        assert len(claimed) == 3
        assert all(hasattr(job, "rate_slots") for job in claimed)
        assert claim() == []
        assert 0 < lifecycle.next_start_in() <= 1
        assert lifecycle.waiting_for(jobs[4]) == "queue mail at its rate limit 3/s"
        assert RateSlot.objects.filter(limiter="queue:mail").count() == 3

    def test_a_rate_per_key(self, make_job):
        Queue.objects.create(name="sync", key_rate="1/h")
        jobs = [make_job(queue="sync", concurrency_key=key) for key in "aab"]
        make_job(queue="sync")  # no key: no key rate
        claimed = claim()
        assert sorted(job.concurrency_key or "-" for job in claimed) == ["-", "a", "b"]
        finish(claimed)
        assert claim() == []  # a's second start waits for the next hour, done or not
        assert lifecycle.waiting_for(jobs[1]) == "key a at its rate limit 1/h"
        assert all(lifecycle.start_rated(job) for job in claimed)

    def test_a_slot_no_job_took_stays_free(self, make_job):
        Queue.objects.create(name="mail", rate="3/h")
        make_job(queue="mail")
        assert len(claim()) == 1
        assert RateSlot.objects.filter(last_used__isnull=True).count() == 2
        make_job(queue="mail")
        make_job(queue="mail")
        assert len(claim()) == 2

    def test_only_as_many_as_can_start_now(self, make_job):
        Queue.objects.create(name="mail", rate="10/s")
        for _ in range(5):
            make_job(queue="mail")
        assert len(claim(starts=2)) == 2
        assert claim(starts=0) == []  # claiming ahead takes no rate-limited job

    def test_the_start_stamps_the_slot_once(self, make_job):
        Queue.objects.create(name="mail", rate="1/h")
        make_job(queue="mail")
        (job,) = claim()
        assert lifecycle.start_rated(job)
        stamped = RateSlot.objects.get().last_used
        assert stamped > timezone.now()  # a little ahead: the task starts before it
        job.rate_slots = [(job.rate_slots[0][0], stamped - timedelta(seconds=1))]
        assert not lifecycle.start_rated(job)  # the slot moved: this start is refused


class TestCost:
    def test_without_flow_control_a_full_claim_is_one_statement(self, make_job):
        for _ in range(6):
            make_job()
        claim(limit=1)  # reads the flow state (cached for a second)
        with CaptureQueriesContext(connection) as queries:
            assert len(claim(limit=2)) == 2
        statements = [q["sql"] for q in queries.captured_queries]
        if connection.vendor == "mysql":
            # No UPDATE ... RETURNING there: select (locking, SKIP LOCKED), update, read.
            assert len([s for s in statements if "UPDATE" in s]) == 2
            assert len(statements) <= 5, statements  # three, plus BEGIN/COMMIT if shown
            return
        assert len([s for s in statements if "UPDATE" in s]) == 1
        assert len(statements) <= 3, statements  # the statement, plus BEGIN/COMMIT if shown


class TestSettings:
    @pytest.mark.parametrize(
        "value",
        [
            [],
            {"mail": 5},
            {"mail": {"concurrency": 0}},
            {"mail": {"concurrency": "5"}},
            {"mail": {"rate": "ten a second"}},
            {"mail": {"key_rate": "1/fortnight"}},
            {"mail": {"burst": 3}},
        ],
    )
    def test_bad_values_are_improperly_configured(self, settings, value):
        settings.JOBS_QUEUES = value
        with pytest.raises(ImproperlyConfigured, match="JOBS_QUEUES"):
            conf.QUEUES  # noqa: B018

    def test_rates(self):
        assert parse_rate("10/s") == (10, 1.0)
        assert parse_rate("1000/h") == (1000, 3600.0)
        assert parse_rate("5/30s") == (5, 30.0)
        with pytest.raises(ValueError, match="not a rate"):
            parse_rate("0/s")

    def test_limits_merge_settings_and_row(self, settings):
        settings.JOBS_QUEUES = {"mail": {"concurrency": 5, "rate": "10/s"}}
        Queue.objects.create(name="mail", rate="2/s", paused=True)
        assert flow.limits("mail") == flow.Limits(
            queue="mail", paused=True, concurrency=5, rate="2/s"
        )


class TestPythonApi:
    def test_pause_resume_and_state(self, make_job):
        import jobs

        make_job(queue="mail")
        jobs.pause_queue(name="mail")
        assert jobs.queue_state(name="mail") == {
            "name": "mail",
            "paused": True,
            "concurrency": None,
            "key_concurrency": None,
            "rate": None,
            "key_rate": None,
            "processing": 0,
            "queued": 1,
            "due": 1,
        }
        jobs.resume_queue(name="mail")
        assert not jobs.queue_state(name="mail")["paused"]
        with pytest.raises(ValueError, match="not a queue name"):
            jobs.pause_queue(name="no spaces")

    def test_pauses_and_resumes_of_one_queue_at_once_never_fail(self):
        """Two threads pausing and resuming one queue at once: never a database error (on
        InnoDB, an insert of the row already there took a shared lock, and two of them
        asking for the write lock deadlocked: a 500 from ``POST /api/queues/<name>/resume``)."""
        from concurrent.futures import ThreadPoolExecutor

        from django.db import connections

        import jobs

        jobs.pause_queue(name="mail")

        def toggle(paused: bool) -> None:
            try:
                for _ in range(30):
                    (jobs.pause_queue if paused else jobs.resume_queue)(name="mail")
            finally:
                connections.close_all()

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(toggle, True), pool.submit(toggle, False)]:
                done.result()
        assert Queue.objects.filter(name="mail").count() == 1

    def test_enqueue_takes_a_concurrency_key(self):
        import jobs

        job = jobs.enqueue(task="echo", concurrency_key="account:7")
        assert Job.objects.get(pk=job.pk).concurrency_key == "account:7"
        [many] = jobs.enqueue_many(jobs=[{"task": "echo", "concurrency_key": "a"}])
        assert many.concurrency_key == "a"


class TestCommand:
    def test_pause_show_list_resume(self, make_job):
        from io import StringIO

        from django.core.management import CommandError, call_command

        def run(*args: str) -> str:
            out = StringIO()
            call_command("queue", *args, stdout=out)
            return out.getvalue()

        make_job(queue="mail")
        assert run("pause", "mail") == "queue mail: paused (running jobs finish)\n"
        assert Queue.objects.get(name="mail").paused
        assert run("show", "mail") == (
            "mail: paused concurrency=- key_concurrency=- rate=- key_rate=- "
            "processing=0 queued=1 due=1\n"
        )
        assert run("list").startswith("mail: paused")
        run("resume", "mail")
        assert not Queue.objects.get(name="mail").paused
        with pytest.raises(CommandError, match="needs a queue name"):
            run("pause")


class TestApi:
    def test_pause_resume_and_read_a_queue(self, api, make_job):
        make_job(queue="mail")
        paused = api.post("/api/queues/mail/pause")
        assert paused.status_code == 200, paused.content
        assert paused.json() == {
            "name": "mail",
            "paused": True,
            "concurrency": None,
            "key_concurrency": None,
            "rate": None,
            "key_rate": None,
            "processing": 0,
            "queued": 1,
            "due": 1,
        }
        assert api.get("/api/queues/mail/").json()["paused"] is True
        assert api.post("/api/queues/mail/resume/").json()["paused"] is False

    def test_list_shows_configured_and_stored_queues_with_limits(self, api, settings):
        settings.JOBS_QUEUES = {"mail": {"concurrency": 5, "rate": "10/s"}}
        Queue.objects.create(name="sync", key_concurrency=2)
        listed = {q["name"]: q for q in api.get("/api/queues").json()}
        assert set(listed) == {"mail", "sync"}
        assert (listed["mail"]["concurrency"], listed["mail"]["rate"]) == (5, "10/s")
        assert listed["sync"]["key_concurrency"] == 2

    def test_a_bad_name_is_a_404_and_pausing_needs_change_permission(
        self, api, make_user, client_for
    ):
        assert api.post("/api/queues/no%20spaces/pause").status_code == 404
        viewer = make_user(name="viewer")
        from django.contrib.auth.models import Permission

        viewer.user_permissions.set(Permission.objects.filter(codename="view_queue"))
        client = client_for(viewer)
        assert client.get("/api/queues/mail").status_code == 200
        assert client.post("/api/queues/mail/pause").status_code == 403
        assert not Queue.objects.filter(paused=True).exists()

    def test_a_job_says_why_it_waits_and_takes_a_concurrency_key(self, api):
        created = api.post("/api/jobs", {"task": "echo", "concurrency_key": "a"}, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["concurrency_key"] == "a"
        claim()
        second = api.post("/api/jobs", {"task": "echo", "concurrency_key": "a"}, format="json")
        detail = api.get(f"/api/jobs/{second.json()['id']}").json()
        assert detail["waiting_for"] == "key a at its limit 1"
        long_key = api.post("/api/jobs", {"task": "echo", "concurrency_key": "k" * 201}, "json")
        assert long_key.status_code == 400


class TestAdmin:
    def test_pause_and_resume_actions_are_recorded_in_the_history(self, admin_client, make_job):
        from django.contrib.admin.models import LogEntry
        from django.urls import reverse

        make_job(queue="mail")
        queue = Queue.objects.create(name="mail")
        changelist = reverse("admin:jobs_queue_changelist")
        response = admin_client.post(
            changelist, {"action": "pause", "_selected_action": [queue.pk]}, follow=True
        )
        assert "1 queue(s) paused." in response.content.decode()
        assert Queue.objects.get(name="mail").paused
        admin_client.post(changelist, {"action": "resume", "_selected_action": [queue.pk]})
        assert not Queue.objects.get(name="mail").paused
        assert LogEntry.objects.filter(object_id=str(queue.pk)).count() == 2
        page = admin_client.get(changelist).content.decode()
        assert "mail" in page and "active" in page

    def test_limits_are_editable_validated_and_audited(self, admin_client, settings):
        from django.contrib.admin.models import LogEntry
        from django.urls import reverse

        settings.JOBS_QUEUES = {"mail": {"concurrency": 5}}
        queue = Queue.objects.create(name="mail")
        url = reverse("admin:jobs_queue_change", args=[queue.pk])
        page = admin_client.get(url).content.decode()
        assert "concurrency=5" in page  # what the settings say, beside the stored value
        form = {"concurrency": "2", "key_concurrency": "", "rate": "ten", "key_rate": ""}
        refused = admin_client.post(url, form)
        assert refused.status_code == 200 and "is not a rate" in refused.content.decode()
        saved = admin_client.post(url, {**form, "rate": "10/s"})
        assert saved.status_code == 302
        assert flow.limits("mail") == flow.Limits(queue="mail", concurrency=2, rate="10/s")
        assert LogEntry.objects.filter(object_id=str(queue.pk)).exists()

    def test_a_jobs_page_says_why_it_waits(self, admin_client, make_job):
        from django.urls import reverse

        job = make_job(queue="mail")
        lifecycle.pause_queue(name="mail")
        page = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
        assert "queue mail is paused" in page.content.decode()


class TestRunDue:
    def test_run_jobs_keeps_to_the_limits(self, make_job):
        from jobs.testing import run_jobs

        Queue.objects.create(name="mail", rate="2/h")
        for _ in range(3):
            make_job(queue="mail")
        assert len(run_jobs()) == 2  # the third start waits for the next hour
        assert Job.objects.filter(status=Status.QUEUED).count() == 1
