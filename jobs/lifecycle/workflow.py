"""Workflows: a graph of jobs created at once, some waiting for others.

``enqueue_workflow`` checks a whole graph, then creates it in one transaction: every
job by the rules of ``check_job`` (a job with parents ``waiting``, the others
``queued``), and the edges (``Dependency``). A cycle, an edge to a name no job has,
a name used twice or an invalid job raise ``InvalidJob`` naming it, and nothing is
created. ``dependents`` moves the waiting jobs as their parents end;
``workflow_state`` summarises a workflow, ``cancel_workflow`` cancels what has not
started.
"""

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet

from jobs.exceptions import InvalidJob
from jobs.lifecycle.bulk import BulkResult, cancel_many
from jobs.lifecycle.create import _insert, _new_job, check_job
from jobs.lifecycle.events import log_enqueued
from jobs.lifecycle.transitions import DONE, FAILED, QUEUED, WAITING
from jobs.models import ACTIVE_STATUSES, Dependency, Job, OnParentFailure, Status, Workflow

STEP_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
MAX_WORKFLOW_NAME = 200
GRAPH_KEYS = ("name", "after", "on_parent_failure")


def enqueue_workflow(*, jobs: Sequence[Mapping[str, Any]], name: str = "") -> Workflow:
    """Create a workflow of ``jobs`` in one transaction; return it.

    Each job is a dict of ``enqueue``'s arguments (no ``idempotency_key``) plus
    ``name`` (unique in the workflow), ``after`` (names of the jobs it waits for)
    and ``on_parent_failure`` (``"cancel"``, the default, or ``"run"``). Raises
    ``InvalidJob`` naming each fault (``"jobs.2.after"``, ``"jobs.0.payload"``, or
    ``"jobs"`` for a cycle); nothing is created then.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or len(name) > MAX_WORKFLOW_NAME:
        errors["name"] = [f"Use a string of at most {MAX_WORKFLOW_NAME} characters."]
    if not jobs:
        errors["jobs"] = ["Give at least one job."]
    names = _names(jobs, errors)
    parents = _edges(jobs, names, errors)
    specs = _checked(jobs, errors)
    if not errors and (cycle := _cycle(parents)):
        errors["jobs"] = [f"The jobs wait for each other in a cycle: {' -> '.join(cycle)}."]
    if errors:
        raise InvalidJob(errors)
    with transaction.atomic():
        workflow = Workflow.objects.create(name=name)
        waited_for = {parent for after in parents.values() for parent, _ in after}
        built = []
        for job_spec, (task, options) in zip(jobs, specs, strict=True):
            job = _new_job(task, options)
            job.workflow_id, job.step = workflow.pk, job_spec["name"]
            job.status = WAITING if parents[job.step] else QUEUED
            job.has_dependents = job.step in waited_for
            built.append(job)
        _insert(built)
        by_name = {job.step: job for job in built}
        Dependency.objects.bulk_create(
            Dependency(
                child=by_name[child],
                parent=by_name[parent],
                parent_name=parent,
                on_parent_failure=policy,
            )
            for child, after in parents.items()
            for parent, policy in after
        )
    log_enqueued(built)
    return workflow


def _names(jobs: Sequence[Any], errors: dict[str, list[str]]) -> dict[str, int]:
    """Each job's name -> its index; a missing, malformed or repeated name is an error."""
    names: dict[str, int] = {}
    for index, spec in enumerate(jobs):
        if not isinstance(spec, Mapping):
            errors[f"jobs.{index}"] = ["Give a job as an object."]
            continue
        step = spec.get("name")
        if not isinstance(step, str) or not STEP_NAME.fullmatch(step):
            errors[f"jobs.{index}.name"] = ["Use 1-100 letters, digits, '_', '.', ':' or '-'."]
        elif step in names:
            errors[f"jobs.{index}.name"] = [f"Job {names[step]} has the name {step!r} too."]
        else:
            names[step] = index
    return names


def _edges(
    jobs: Sequence[Any], names: dict[str, int], errors: dict[str, list[str]]
) -> dict[str, list[tuple[str, str]]]:
    """Each named job -> its parents' names with the policy of each edge."""
    parents: dict[str, list[tuple[str, str]]] = {}
    for index, spec in enumerate(jobs):
        if not isinstance(spec, Mapping) or spec.get("name") not in names:
            continue
        after, policy = spec.get("after", []), spec.get("on_parent_failure", "cancel")
        if policy not in OnParentFailure.values:
            errors[f"jobs.{index}.on_parent_failure"] = ['Use "cancel" or "run".']
        if not isinstance(after, list | tuple) or not all(isinstance(p, str) for p in after):
            errors[f"jobs.{index}.after"] = ["Give a list of job names."]
            continue
        if unknown := [p for p in after if p not in names]:
            errors[f"jobs.{index}.after"] = [f"No job is named {p!r}." for p in unknown]
        elif repeated := [p for p, n in Counter(after).items() if n > 1]:
            errors[f"jobs.{index}.after"] = [f"{p!r} is named twice." for p in repeated]
        parents[spec["name"]] = [(p, policy) for p in after if p in names]
    return parents


def _checked(jobs: Sequence[Any], errors: dict[str, list[str]]) -> list[tuple[Any, dict]]:
    """Each job's task and ``enqueue`` arguments, checked by ``check_job``."""
    checked = []
    for index, spec in enumerate(jobs):
        if not isinstance(spec, Mapping):
            continue
        options = {key: value for key, value in spec.items() if key not in GRAPH_KEYS}
        if unknown := sorted(set(options) - set(JOB_OPTIONS)):
            for key in unknown:
                errors[f"jobs.{index}.{key}"] = ["Unknown field."]
            continue
        try:
            checked.append((check_job(**options), options))
        except InvalidJob as exc:
            errors |= {f"jobs.{index}.{field}": texts for field, texts in exc.errors.items()}
    return checked


# What a workflow's job may say besides its place in the graph (no idempotency key:
# the workflow is the unit created once).
JOB_OPTIONS = (
    "task",
    "payload",
    "queue",
    "priority",
    "run_after",
    "max_attempts",
    "timeout",
    "concurrency_key",
)


def _cycle(parents: dict[str, list[tuple[str, str]]]) -> list[str] | None:
    """A cycle of the graph as names (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in parents:
        if state.get(start):
            continue
        path, stack = [start], [iter(p for p, _ in parents.get(start, []))]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return [*path[path.index(step) :], step]
            elif not state.get(step):
                state[step] = 1
                path.append(step)
                stack.append(iter(p for p, _ in parents.get(step, [])))
    return None


def workflow_state(workflow: Workflow) -> dict[str, Any]:
    """The workflow's overall state and its jobs' count by status (``state_of``)."""
    counts = getattr(workflow, "counts", None)
    if counts is None:
        counts = dict(Counter(workflow.jobs.values_list("status", flat=True)))
    return {"state": state_of(counts), "counts": counts}


def state_of(counts: Mapping[str, int]) -> str:
    """``running`` while any job is unfinished; then ``done`` when all are done,
    ``failed`` when any failed, else ``cancelled``."""
    if any(counts.get(s) for s in ACTIVE_STATUSES):
        return "running"
    if all(status == DONE for status, n in counts.items() if n):
        return "done"
    return "failed" if counts.get(FAILED) else "cancelled"


def with_counts(workflows: QuerySet) -> list[Workflow]:
    """``workflows`` with each one's ``counts`` (its jobs by status, 0s left out) read in
    the same query, for ``workflow_state``."""
    found = list(
        workflows.annotate(
            **{f"n_{s.value}": Count("jobs", filter=Q(jobs__status=s.value)) for s in Status}
        )
    )
    for workflow in found:
        workflow.counts = {s.value: n for s in Status if (n := getattr(workflow, f"n_{s.value}"))}
    return found


def cancel_workflow(*, workflow_id: Any) -> BulkResult:
    """Cancel the workflow's jobs that have not started (waiting or queued); running ones
    finish, and whatever waits for a cancelled job follows its policy."""
    return cancel_many(
        ids=Job.objects.filter(workflow_id=workflow_id, status__in=[WAITING, QUEUED])
    )
