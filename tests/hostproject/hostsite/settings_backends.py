"""The host project's settings as its tests often set them: no queue at all."""

from hostsite.settings import *  # noqa: F403

TASKS = {
    "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
    "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
}
