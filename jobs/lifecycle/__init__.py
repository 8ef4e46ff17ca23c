"""The job state machine (moving to a package; the next commit splits it by concern)."""

from jobs.lifecycle.create import *  # noqa: F403
