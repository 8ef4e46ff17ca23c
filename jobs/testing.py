"""Helpers for a project's tests: run queued jobs synchronously, in the test's process.

In a ``django.test.TestCase``, every test runs inside a transaction that is rolled
back at its end, so no other process (a worker, its executor children) can see
the jobs it queues. ``run_jobs`` runs them right there instead, through the same
code a worker uses (``jobs.runner``), and returns what ran::

    from django.test import TestCase
    from jobs.testing import run_jobs

    class ReceiptTests(TestCase):
        def test_receipt_is_sent(self):
            result = send_receipt.enqueue(42)
            [job] = run_jobs()
            self.assertEqual(job.status, "done")
            result.refresh()
            self.assertEqual(result.return_value, "sent")

``call_command("runworker", "--once")`` does the same when it finds itself inside
a transaction.
"""

from collections.abc import Sequence

from jobs import runner
from jobs.models import Job


def run_jobs(*, queues: Sequence[str] | None = None, limit: int | None = None) -> list[Job]:
    """Run every due job (of ``queues``, default all) in this process; return them in the
    order they ran, each as its attempt left it (``status``, ``result``, ``error``).

    A failed attempt with attempts left is queued again for later (its backoff), so it
    is returned once, with status ``queued``; jobs that tasks queue while running are
    run too. ``limit`` stops after that many jobs. Timeouts are not enforced.
    """
    return runner.run_due(queues=queues, limit=limit)
