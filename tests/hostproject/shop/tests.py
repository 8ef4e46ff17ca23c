"""A host project's own tests of its jobs, in Django's TestCase (run by test_host_project)."""

import tempfile
from pathlib import Path

from django.core import mail
from django.core.management import call_command
from django.tasks import TaskResultStatus
from django.test import TestCase

import jobs
from jobs.exceptions import InvalidJob
from jobs.testing import run_jobs
from shop.tasks import add, attempt, fail_once


class RunJobsTests(TestCase):
    def test_run_jobs_runs_queued_tasks_and_returns_them(self):
        first, second = add.enqueue(2, 3), attempt.enqueue()
        ran = run_jobs()
        self.assertEqual([str(job.pk) for job in ran], [first.id, second.id])
        self.assertEqual([job.status for job in ran], ["done", "done"])
        first.refresh()
        second.refresh()
        self.assertEqual((first.status, first.return_value), (TaskResultStatus.SUCCESSFUL, 5))
        self.assertEqual(second.return_value, 1)
        self.assertEqual(run_jobs(), [])

    def test_task_options_reach_the_queue(self):
        job_count = Path(tempfile.mkdtemp()) / "attempts"
        result = fail_once.enqueue(str(job_count))
        [job] = run_jobs()
        # max_attempts=2: the failure is retried later instead of failing the task.
        self.assertEqual((job.status, job.attempts, job.max_attempts), ("queued", 1, 2))
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.READY)
        self.assertEqual(result.errors[0].exception_class, ConnectionError)
        self.assertEqual(add.get_result(add.enqueue(1, 1).id).task.get_backend().alias, "default")

    def test_runworker_once_runs_due_jobs_in_a_testcase(self):
        result = add.enqueue(20, 22)
        call_command("runworker", "--once")
        result.refresh()
        self.assertEqual(result.return_value, 42)

    def test_send_email_goes_through_the_projects_mail_settings(self):
        queued = jobs.send_email(to="ada@example.com", subject="Your order", body="Thanks")
        [job] = run_jobs()
        self.assertEqual(job.result, {"sent": 1, "to": ["ada@example.com"]})
        self.assertEqual(jobs.get_job(job_id=queued.pk).status, "done")
        [message] = mail.outbox
        self.assertEqual((message.subject, message.from_email), ("Your order", "shop@example.com"))

    def test_the_python_api_refuses_what_the_http_api_refuses(self):
        with self.assertRaises(InvalidJob) as caught:
            jobs.send_email(to="not-an-address", subject="Hi", body="")
        self.assertEqual(list(caught.exception.errors), ["payload.to.0"])
        with self.assertRaises(InvalidJob) as caught:
            jobs.http_request(url="https://not-allowed.example/hook")
        self.assertIn("JOBS_HTTP_ALLOWED_HOSTS", caught.exception.errors["payload.url"][0])
        self.assertEqual(run_jobs(), [])
