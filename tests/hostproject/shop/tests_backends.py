"""The same task module under Django's own backends (settings_backends)."""

from django.tasks import TaskResultStatus, task_backends
from django.test import SimpleTestCase

from shop.tasks import add, attempt


class OtherBackendsTests(SimpleTestCase):
    def test_immediate_backend_runs_the_tasks(self):
        result = add.enqueue(2, 3)
        self.assertEqual((result.status, result.return_value), (TaskResultStatus.SUCCESSFUL, 5))
        self.assertEqual(attempt.enqueue().return_value, 1)

    def test_dummy_backend_keeps_them(self):
        result = add.using(backend="dummy").enqueue(2, 3)
        self.assertEqual(result.status, TaskResultStatus.READY)
        self.assertEqual(task_backends["dummy"].results, [result])
