"""The operator's console in a real browser: Playwright driving Debian's Chromium.

A live server serves the admin from the test database and a real ``runworker``
subprocess runs the jobs. Without Chromium these tests are skipped, unless
``REQUIRE_BROWSER=1`` (as in CI), which turns the skip into a failure.
Screenshots go to ``$SCREENSHOT_DIR`` when set (``make screenshots`` writes
``docs/screenshots/``).
"""

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Job, Queue, Status, Worker
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "pw-for-tests-only"
# The operator's laptop: every list must fit it without hidden columns.
VIEWPORT = {"width": 1280, "height": 800}


def missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (requirements-dev.txt)"
    if not shutil.which(CHROMIUM):
        return f"{CHROMIUM} not found: apt-get install chromium"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required (REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM
    # calls are still synchronous and safe.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any, django_user_model: Any) -> Iterator[Any]:
    """A logged-in operator's page on the live server."""
    django_user_model.objects.create_superuser("operator", password=PASSWORD)
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.goto("/admin/login/")
    tab.fill("#id_username", "operator")
    tab.fill("#id_password", PASSWORD)
    tab.click("input[type=submit]")
    tab.wait_for_selector("#site-name")
    yield tab
    context.close()


def screenshot(tab: Any, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def failed_job() -> Job:
    """An echo job that failed for good, with its error, traceback and attempt history."""
    job, _ = lifecycle.enqueue(task="echo", payload={"order": 17, "items": ["a", "b"]})
    (job,) = lifecycle.claim(worker_id="host-1-old")
    job.started_at = timezone.now() - timedelta(seconds=2.5)
    lifecycle.mark_started(worker_id="host-1-old", starts=[(job, job.started_at)])
    lifecycle.fail(
        job=job,
        worker_id="host-1-old",
        error="ConnectionError: payment gateway timed out",
        traceback='Traceback (most recent call last):\n  File "shop/tasks.py", line 12\n'
        "ConnectionError: payment gateway timed out",
        retry=False,
    )
    return Job.objects.get(pk=job.pk)


def finished_jobs(done: int, failed: int) -> None:
    """Jobs finished over the last minutes, so the dashboard has something to draw."""
    now = timezone.now()
    rows = [
        Job(
            task=("echo", "noop")[i % 2],
            queue=("default", "mail", "media")[i % 3],
            status=Status.DONE if i < done else Status.FAILED,
            attempts=1,
            worker_id=f"host-{i % 2}-{4000 + i % 2}-5e1f0a",
            started_at=now - timedelta(minutes=i % 40, seconds=2),
            finished_at=now - timedelta(minutes=i % 40),
            error=None if i < done else "ValueError: bad input",
        )
        for i in range(done + failed)
    ]
    for job in Job.objects.bulk_create(rows):  # created_at is auto_now_add: set it after
        Job.objects.filter(pk=job.pk).update(created_at=job.started_at - timedelta(seconds=3))


def burst(*, minutes_ago: int, n: int) -> None:
    """``n`` jobs done in one minute, ``minutes_ago``: a burst on the chart."""
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Job.objects.bulk_create(
        [Job(task="echo", status=Status.DONE, started_at=at, finished_at=at) for _ in range(n)]
    )


def test_filter_open_retry_and_see_it_done_through_a_worker(page: Any, processes: Any) -> None:
    finished_jobs(done=30, failed=4)
    job = failed_job()
    processes.worker()

    page.goto("/admin/jobs/job/")
    screenshot(page, "changelist")
    assert_last_column_visible(page)
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    page.wait_for_url("**status__exact=failed**")
    badges = page.locator("#result_list .job-badge")
    assert set(badges.all_inner_texts()) == {"failed"}

    page.get_by_role("link", name=str(job.pk)[:8]).click()
    page.wait_for_selector("text=payment gateway timed out")
    assert "shop/tasks.py" in page.inner_text(".field-traceback_text")
    screenshot(page, "job")

    page.select_option("select[name='CHANGE_FORM-action']", "retry_jobs")
    page.click(".actions button[name=index]")
    page.wait_for_selector("text=1 job requeued.")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.DONE)
    page.reload()
    assert page.input_value("#id_status") == Status.DONE
    assert '"order": 17' in page.inner_text(".field-result_json")


def test_cancel_a_queued_job_by_bulk_action(page: Any) -> None:
    later = timezone.now() + timedelta(hours=1)
    keep, _ = lifecycle.enqueue(task="echo", run_after=later)
    target, _ = lifecycle.enqueue(task="echo", run_after=later)
    done = failed_job()

    page.goto("/admin/jobs/job/")
    for job in (target, done):
        page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "cancel_jobs")
    page.click(".actions button[name=index]")
    message = page.locator("ul.messagelist").inner_text()
    assert "1 job cancelled." in message and "1 skipped: 1 failed" in message
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[target.pk] == Status.CANCELLED
    assert statuses[keep.pk] == Status.QUEUED and statuses[done.pk] == Status.FAILED


def test_dashboard_from_the_admin_index_shows_the_chart(page: Any) -> None:
    finished_jobs(done=50, failed=6)
    burst(minutes_ago=3, n=400)
    lifecycle.enqueue(task="echo", queue="media")
    (running,) = lifecycle.claim(worker_id="host-1-4242-1a2b3c")
    now = timezone.now()
    Worker.objects.create(
        id="host-1-4242-1a2b3c",
        hostname="host-1",
        pid=4242,
        queues=["media"],
        started_at=now - timedelta(minutes=5),
        last_heartbeat_at=now,
    )
    lifecycle.enqueue(task="echo", queue="mail")
    page.goto("/admin/")
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_selector("svg.jobs-chart")
    assert page.locator("svg.jobs-chart rect.bar-done").count() > 0
    assert page.locator("svg.jobs-chart rect.bar-failed").count() > 0
    # The burst is cut at the top and its value written above it; the rest stays readable.
    (peak,) = [
        int(text or 0) for text in page.locator("svg.jobs-chart text.peak").all_text_contents()
    ]
    assert peak >= 400
    assert page.inner_text("#count-queued .value") == "1"
    assert "%" in page.inner_text("#failure-rate .value")
    workers = page.inner_text("#workers")
    assert "host-1-4242-1a2b3c" in workers and running.task in workers
    screenshot(page, "dashboard")
    page.get_by_text("The chart's numbers, as a table").click()
    assert page.locator("#throughput-table tbody tr").count() == 60


def test_two_tabs_on_one_job_a_page_opened_before_the_job_ran_changes_nothing(
    page: Any, processes: Any
) -> None:
    """Issue 12, point 9, as an operator does it: one tab opens a queued job, a worker
    finishes the job, a second tab opens it (done); saving only a new priority from the
    first tab must not requeue the job (it would run twice) nor change anything. The
    second, fresh tab can still requeue it on purpose."""
    job, _ = lifecycle.enqueue(task="echo", payload={"order": 42})
    url = f"/admin/jobs/job/{job.pk}/change/"
    stale = page
    stale.set_viewport_size({"width": 1280, "height": 800})
    stale.goto(url)
    assert stale.input_value("#id_status") == Status.QUEUED
    # The operator starts editing: the page stops refreshing itself (it would replace the
    # edit), so from here on it shows the job as it was.
    stale.fill("#id_priority", "5")
    assert "paused while you edit" in stale.inner_text(".jobs-live-status")
    screenshot(stale, "stale-page-1-opened-while-queued")

    processes.worker()
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.DONE)
    fresh = page.context.new_page()
    fresh.set_viewport_size({"width": 1280, "height": 800})
    fresh.goto(url)
    assert fresh.input_value("#id_status") == Status.DONE
    screenshot(fresh, "stale-page-2-second-tab-done")

    stale.click("input[name=_save]")
    message = stale.locator("ul.messagelist").inner_text()
    assert "This job changed since you opened it: it is now done." in message
    assert "Nothing was changed" in message and "successfully" not in message
    assert stale.input_value("#id_status") == Status.DONE  # the job as it is now
    assert stale.input_value("#id_priority") == "0"
    screenshot(stale, "stale-page-3-save-refused")
    after = Job.objects.get(pk=job.pk)
    assert (after.status, after.attempts, after.priority) == (Status.DONE, 1, 0)

    fresh.select_option("#id_status", Status.QUEUED)
    fresh.click("input[name=_save]")
    assert "was changed successfully" in fresh.locator("ul.messagelist").inner_text()
    wait_for(lambda: Job.objects.filter(pk=job.pk, status=Status.DONE, attempts=2).exists())


def assert_last_column_visible(tab: Any, table: str = "#result_list") -> None:
    """The list's last column lies inside the 1280 px viewport and inside the list's own
    box (which would otherwise scroll sideways): nothing is cut off."""
    last = tab.locator(f"{table} thead th").last.bounding_box()
    frame = tab.locator(table).locator("xpath=..").bounding_box()
    assert last is not None and frame is not None
    right = last["x"] + last["width"]
    assert right <= min(VIEWPORT["width"], frame["x"] + frame["width"]) + 0.5, (last, frame)


def failures_of(cause: str, n: int, *, task: str = "echo") -> list[Job]:
    """Jobs that failed for good with ``cause``, through the lifecycle."""
    jobs = []
    for i in range(n):
        job, _ = lifecycle.enqueue(task=task, payload={"n": i}, max_attempts=1)
        (held,) = lifecycle.claim(worker_id="host-2-old")
        error = f"{cause}: order {i} rejected"
        trace = f'Traceback (most recent call last):\n  File "shop/orders.py", line 40\n{error}'
        lifecycle.fail(job=held, worker_id="host-2-old", error=error, traceback=trace)
        jobs.append(job)
    return jobs


def test_group_failures_by_cause_and_retry_a_whole_group(page: Any, processes: Any) -> None:
    """The failures view groups failed jobs by cause; "Retry all" on one group, confirmed,
    requeues exactly that group, and a worker runs them to done."""
    declined = failures_of("shop.PaymentDeclined", 4)
    others = failures_of("KeyError", 2)
    processes.worker()

    page.goto("/admin/jobs/job/")
    page.locator(".object-tools").get_by_role("link", name="Failures").click()
    page.wait_for_selector("#failure-groups")
    rows = page.locator("#failure-groups tbody tr")
    assert rows.count() == 2
    first = rows.first
    assert "shop.PaymentDeclined" in first.inner_text() and "4" in first.inner_text()
    first.locator("summary").click()  # the latest traceback, unfolded
    assert "shop/orders.py" in first.locator("pre").inner_text()
    screenshot(page, "failures")

    first.get_by_role("button", name="Retry all 4").click()
    page.wait_for_selector("#confirm-count")
    assert "4 jobs match this filter" in page.inner_text("#confirm-count")
    screenshot(page, "apply-to-all-confirm")
    page.get_by_role("button", name="Yes, apply to all 4").click()
    assert "4 jobs requeued in 1 batch." in page.locator("ul.messagelist").inner_text()
    wait_for(
        lambda: Job.objects.filter(pk__in=[j.pk for j in declined], status=Status.DONE).count() == 4
    )
    assert set(
        Job.objects.filter(pk__in=[j.pk for j in others]).values_list("status", flat=True)
    ) == {Status.FAILED}


def test_apply_to_all_of_a_filter_larger_than_max_bulk_while_a_worker_runs(
    page: Any, processes: Any, settings: Any
) -> None:
    """ "Select all" on a filter of 60 jobs with JOBS_MAX_BULK = 7 cancels every one the
    worker has not finished, in batches; running ones are cancelled, none is lost."""
    settings.JOBS_MAX_BULK = 7
    jobs = lifecycle.enqueue_many(
        [{"task": "test.sleep", "queue": "bulk", "payload": {"seconds": 0.5}} for _ in range(60)]
    )
    processes.worker("--queue", "bulk")
    wait_for(lambda: Job.objects.filter(queue="bulk", status=Status.PROCESSING).exists())

    page.goto("/admin/jobs/job/?queue=bulk")
    screenshot(page, "changelist-running")
    assert_last_column_visible(page)
    page.check("#action-toggle")
    page.click(".actions .question a")  # "Select all 60 jobs"
    page.select_option("select[name=action]", "cancel_jobs")
    page.click(".actions button[name=index]")
    page.wait_for_selector("#confirm-count")
    assert "60 jobs match this filter" in page.inner_text("#confirm-count")
    page.locator("input[type=submit][value^='Yes, apply to all']").click()
    message = page.locator("ul.messagelist").inner_text()
    assert "cancelled in" in message and "batches" in message, message
    wait_for(lambda: not Job.objects.filter(queue="bulk", status=Status.PROCESSING).exists())
    statuses = list(Job.objects.filter(queue="bulk").values_list("status", flat=True))
    assert len(statuses) == len(jobs) == 60
    assert set(statuses) <= {Status.DONE, Status.CANCELLED}
    assert statuses.count(Status.CANCELLED) > 40  # the worker finished only a few


def test_job_page_shows_the_whole_traceback_and_attempt_times(page: Any) -> None:
    job = failed_job()
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    trace = page.locator(".field-traceback_text pre")
    assert trace.inner_text().rstrip().endswith("ConnectionError: payment gateway timed out")
    # Nothing of it is scrolled out of sight: the last line, the exception, shows.
    assert trace.evaluate("el => el.scrollHeight <= el.clientHeight + 1")
    assert "UTC" in page.inner_text(".field-created")
    options = page.locator("#id_status option").all_inner_texts()
    assert sorted(options) == ["Failed", "Queued"]
    screenshot(page, "job")


@pytest.mark.parametrize("path", ["/admin/jobs/worker/", "/admin/jobs/schedule/"])
def test_workers_and_schedules_fit_1280(page: Any, path: str) -> None:
    now = timezone.now()
    Worker.objects.create(
        id="host-1-4242-1a2b3c",
        hostname="host-1",
        pid=4242,
        queues=["default", "mail", "media"],
        started_at=now - timedelta(minutes=5),
        last_heartbeat_at=now,
    )
    from jobs.models import Schedule

    Schedule.objects.create(
        name="every-quarter-hour-report",
        cron="*/15 * * * *",
        task="echo",
        timezone="Europe/Paris",
        next_fire_at=now + timedelta(minutes=15),
    )
    page.goto(path)
    assert_last_column_visible(page)
    if "schedule" in path:
        cron = page.locator("code.job-cron").first.bounding_box()
        assert cron is not None and cron["height"] < 24  # one line, not "*/15 / * * * / *"
    screenshot(page, path.strip("/").split("/")[-1] + "s")


def shows(tab: Any, selector: str, text: str) -> None:
    """Wait, without reloading, until the element at ``selector`` says ``text``."""
    tab.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent.trim() === text",
        arg=[selector, text],
    )


def queue_row(tab: Any, name: str) -> Any:
    return tab.locator(f"#queue-table tr[data-queue='{name}']")


def test_pause_a_queue_from_the_queues_page_and_see_its_jobs_wait_then_resume(
    page: Any, processes: Any
) -> None:
    """A worker serves "orders" and "reports". Paused from the queues page, "orders" keeps
    its jobs queued while the same worker runs a later "reports" job; the page, refreshing
    itself, shows them due; resumed, they run to done."""
    first, _ = lifecycle.enqueue(task="echo", queue="orders")
    processes.worker("--queue", "orders", "--queue", "reports")
    wait_for(lambda: Job.objects.get(pk=first.pk).status == Status.DONE)
    # Other queues, as a busy system has them (no worker serves these).
    finished_jobs(done=120, failed=9)
    lifecycle.enqueue_many([{"task": "echo", "queue": "mail"} for _ in range(4)])
    lifecycle.enqueue(task="echo", queue="mail", run_after=timezone.now() + timedelta(hours=1))
    Queue.objects.create(name="media", concurrency=2, rate="30/m")

    page.goto("/admin/")
    page.get_by_role("link", name="Queue overview", exact=True).click()
    page.wait_for_selector("#queue-table")
    assert_last_column_visible(page, "#queue-table")
    row = queue_row(page, "orders")
    assert row.locator(".state").inner_text() == "active"
    row.get_by_role("button", name="Pause orders").click()
    assert "Queue orders paused." in page.locator("ul.messagelist").inner_text()
    assert queue_row(page, "orders").locator(".state").inner_text() == "paused"

    waiting = lifecycle.enqueue_many([{"task": "echo", "queue": "orders"} for _ in range(3)])
    control, _ = lifecycle.enqueue(task="echo", queue="reports")
    wait_for(lambda: Job.objects.get(pk=control.pk).status == Status.DONE)
    ids = [job.pk for job in waiting]
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.QUEUED}
    # The page shows them without a reload.
    shows(page, "#queue-table tr[data-queue='orders'] .due", "3")
    screenshot(page, "queues")

    queue_row(page, "orders").get_by_role("button", name="Resume orders").click()
    assert "Queue orders resumed." in page.locator("ul.messagelist").inner_text()
    wait_for(lambda: Job.objects.filter(pk__in=ids, status=Status.DONE).count() == 3)
    shows(page, "#queue-table tr[data-queue='orders'] .done", "4")
    # A render counts due jobs before done ones: one may show 4 done and 3 still due.
    shows(page, "#queue-table tr[data-queue='orders'] .due", "0")


def test_the_dashboard_updates_itself_without_a_reload(page: Any) -> None:
    """Jobs created while the dashboard is open show up in its counts: the content is
    swapped in place (no navigation: a value set on the window survives), the "updated
    at" time moves, and the pause toggle is remembered across a reload."""
    page.goto("/admin/jobs/job/dashboard/")
    assert page.inner_text("#count-queued .value") == "0"
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.liveMarker = 42")
    before = page.inner_text(".jobs-live-status")

    lifecycle.enqueue_many([{"task": "echo", "queue": "mail"} for _ in range(2)])
    shows(page, "#count-queued .value", "2")
    assert page.evaluate("window.liveMarker") == 42 and navigations == []
    assert "?queue=mail" in page.inner_html("#queues")
    assert page.inner_text(".jobs-live-status") != before

    page.get_by_role("button", name="Pause live refresh").click()
    assert "paused" in page.inner_text(".jobs-live-status")
    page.reload()
    assert page.get_by_role("button", name="Resume live refresh").is_visible()
    page.get_by_role("button", name="Resume live refresh").click()
    assert page.evaluate("localStorage.getItem('jobs-live-paused')") is None


def test_a_running_job_s_page_follows_it_and_stops_when_it_finishes(
    page: Any, processes: Any
) -> None:
    job, _ = lifecycle.enqueue(task="test.sleep", queue="slow", payload={"seconds": 4})
    processes.worker("--queue", "slow")
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.PROCESSING)
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    assert page.input_value("#id_status") == Status.PROCESSING
    assert "refreshes every 5 s" in page.inner_text(".jobs-live-status")
    page.wait_for_function("document.querySelector('#id_status').value === 'done'")
    status = page.inner_text(".jobs-live-status")
    assert "the job is done: no more refreshing" in status
    assert not page.get_by_role("button", name="Pause live refresh").is_visible()
