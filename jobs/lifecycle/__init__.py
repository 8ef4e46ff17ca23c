"""The job state machine: the only code that writes ``Job.status``.

A job is created ``queued``. A worker *claims* it (``processing``): the claim
counts an attempt, names the holder in ``worker_id`` and grants a lease until
``lease_expires_at``, which the holder renews while the task runs. The holder
then reports success (``done``) or failure: with attempts left the job goes
back to ``queued`` with ``run_after`` set by the backoff policy, otherwise it
lands in ``failed``, the failure queue, where it stays until an operator
retries it. A job created with parents (a workflow) is ``waiting`` instead of
``queued`` until its last parent ends: then it is queued with its parents'
outcomes, or cancelled when a parent failed and its edge says so. A queued,
waiting or processing job can be cancelled at any time. A
processing job whose lease expired is *recovered*: its holder is presumed dead,
the attempt is archived as lost, and the job is requeued or failed.

Every transition is one guarded UPDATE (compare-and-set) on the expected
status; a worker's own transitions are also fenced on ``worker_id`` and the
attempt number, so a worker that wakes up after losing its lease cannot
overwrite the attempt that replaced it. Zero rows updated raises
``TransitionRefused``: someone else moved the job first.

``TRANSITIONS`` lists every edge; ``MANUAL_TRANSITIONS`` the edits an operator
or API client may request with ``set_status``.

The package is one public surface: callers import ``jobs.lifecycle`` and use the
names below, never its modules, which split the machine by concern (bottom first):

- ``transitions``: the tables, backoff, holder ids, the holder's fence, refusals,
  the attempt history;
- ``events``: the log line and metrics of each transition;
- ``create``: ``enqueue``, ``enqueue_many``, ``enqueue_fire`` and the rules of a new job;
- ``claim``: claiming jobs, leases and heartbeats, releasing them unfinished;
- ``complete``: the holder's outcome (``succeed``, ``fail``) and progress;
- ``recover``: jobs whose holder died (expired leases);
- ``flow``: paused queues, concurrency and rate limits (claim enforces them);
- ``operator``: ``cancel``, ``retry``, ``set_status``, ``edit``, ``delete`` on one job;
- ``bulk``: the set-based verbs of the admin's actions (``..._many``);
- ``dependents``: a workflow's waiting jobs, released or cancelled in the transaction
  that ends their last parent (``parents_ended``), and waiting again when it is retried;
- ``workflow``: ``enqueue_workflow`` (a graph of jobs in one transaction),
  ``workflow_state``, ``cancel_workflow``.

Nothing below the lifecycle imports it; only the lifecycle writes ``Job.status``.
"""

from jobs.lifecycle.bulk import (
    VERBS,
    BatchedResult,
    BulkResult,
    Selection,
    apply_to_all,
    cancel_many,
    delete_many,
    retry_many,
    run_next_many,
)
from jobs.lifecycle.claim import (
    claim,
    claim_for_hand,
    claim_for_run,
    heartbeat,
    mark_started,
    release,
)
from jobs.lifecycle.complete import fail, report_progress, succeed, succeed_many
from jobs.lifecycle.create import (
    MAX_ATTEMPTS_RANGE,
    MAX_CONCURRENCY_KEY,
    MAX_IDEMPOTENCY_KEY,
    MAX_PAYLOAD_DEPTH,
    PRIORITY_RANGE,
    QUEUE_NAME,
    TIMEOUT_RANGE,
    check_job,
    enqueue,
    enqueue_fire,
    enqueue_many,
    validate_payload,
)
from jobs.lifecycle.dependents import PARENT_ENDED, waiting_on
from jobs.lifecycle.flow import (
    Limits,
    all_limits,
    key_limited_jobs,
    limits,
    next_start_in,
    pause_queue,
    queue_state,
    resume_queue,
    start_rated,
    usage,
    waiting_for,
)
from jobs.lifecycle.operator import EDITABLE_FIELDS, cancel, delete, edit, retry, set_status
from jobs.lifecycle.recover import recover
from jobs.lifecycle.transitions import (
    MANUAL_HOLDER,
    MANUAL_TRANSITIONS,
    TRANSITIONS,
    backoff,
    error_key,
    new_worker_id,
)
from jobs.lifecycle.workflow import (
    MAX_WORKFLOW_NAME,
    STEP_NAME,
    cancel_workflow,
    enqueue_workflow,
    state_of,
    with_counts,
    workflow_state,
)

__all__ = [
    "EDITABLE_FIELDS",
    "MANUAL_HOLDER",
    "MANUAL_TRANSITIONS",
    "MAX_ATTEMPTS_RANGE",
    "MAX_CONCURRENCY_KEY",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_PAYLOAD_DEPTH",
    "MAX_WORKFLOW_NAME",
    "PARENT_ENDED",
    "PRIORITY_RANGE",
    "QUEUE_NAME",
    "STEP_NAME",
    "TIMEOUT_RANGE",
    "TRANSITIONS",
    "VERBS",
    "BatchedResult",
    "BulkResult",
    "Limits",
    "Selection",
    "all_limits",
    "apply_to_all",
    "backoff",
    "cancel",
    "cancel_many",
    "cancel_workflow",
    "check_job",
    "claim",
    "claim_for_hand",
    "claim_for_run",
    "delete",
    "delete_many",
    "edit",
    "enqueue",
    "enqueue_fire",
    "enqueue_many",
    "enqueue_workflow",
    "error_key",
    "fail",
    "heartbeat",
    "key_limited_jobs",
    "limits",
    "mark_started",
    "new_worker_id",
    "next_start_in",
    "pause_queue",
    "queue_state",
    "recover",
    "release",
    "report_progress",
    "resume_queue",
    "retry",
    "retry_many",
    "run_next_many",
    "set_status",
    "start_rated",
    "state_of",
    "succeed",
    "succeed_many",
    "usage",
    "validate_payload",
    "waiting_for",
    "waiting_on",
    "with_counts",
    "workflow_state",
]
