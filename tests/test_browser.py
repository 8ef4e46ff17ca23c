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
from jobs.models import Job, Status, Worker
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
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
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


def test_filter_open_retry_and_see_it_done_through_a_worker(page: Any, processes: Any) -> None:
    finished_jobs(done=30, failed=4)
    job = failed_job()
    processes.worker()

    page.goto("/admin/jobs/job/")
    screenshot(page, "changelist")
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
    assert page.inner_text("#count-queued .value") == "1"
    assert "%" in page.inner_text("#failure-rate .value")
    workers = page.inner_text("#workers")
    assert "host-1-4242-1a2b3c" in workers and running.task in workers
    screenshot(page, "dashboard")


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
    screenshot(stale, "stale-page-1-opened-while-queued")

    processes.worker()
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Status.DONE)
    fresh = page.context.new_page()
    fresh.set_viewport_size({"width": 1280, "height": 800})
    fresh.goto(url)
    assert fresh.input_value("#id_status") == Status.DONE
    screenshot(fresh, "stale-page-2-second-tab-done")

    stale.fill("#id_priority", "5")
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
