"""Dependents: what happens to the jobs waiting for a job when it ends, or comes back.

A job created with parents (a workflow's edges, ``Dependency``) is ``waiting``:
never claimed (the claim reads queued rows only). Whatever ends a job that has
dependents (success, failure with no attempts left, cancel, lease recovery out of
attempts, delete) calls ``parents_ended`` in the same transaction, after its own
UPDATE. For each waiting child of those jobs it locks the child's row (in id
order), then reads the status of every parent of the child in a new statement. Of
two transactions ending a child's last two parents at once, the second waits for
the first's lock on the child and, once the first commits, sees both parents
ended; the first saw the second's parent still running. So exactly one releases
the child, and no loop ever scans the table for waiting jobs.

A parent that ended other than ``done`` (``failed``, ``cancelled``, ``deleted``)
applies its edge's policy: ``cancel`` (the child is cancelled, its error naming the
parent, and its own dependents follow, down the graph) or ``run`` (the parent
counts as ended). A child whose parents have all ended is released to ``queued``
with ``parent_results``: each parent's id, name, status, result and error, in the
order its edges were declared.

``reopen`` is the reverse, for an operator's retry: the dependents cancelled
because of the retried job (and theirs, down the graph) wait again; the states of
their parents decide afresh when those end.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q

from jobs import notify
from jobs.lifecycle.events import logger
from jobs.lifecycle.transitions import CANCELLED, DONE, FAILED, QUEUED, WAITING
from jobs.models import Dependency, Job, OnParentFailure

DELETED = "deleted"  # a parent that was deleted before it finished
ENDED = frozenset({DONE, FAILED, CANCELLED, DELETED})
# The error_class of a dependent cancelled because a parent ended other than done: the
# mark ``reopen`` looks for (and the failures view groups by).
PARENT_ENDED = "parent ended"


def parent_status(status: str | None, final: str | None) -> str:
    """A parent's status as its dependents see it: its row's, else the one it had when
    it was deleted (``parent_final``)."""
    return status or final or DELETED


def parents_ended(*, ids: Iterable[Any], now: datetime) -> None:
    """Settle the waiting dependents of the jobs ``ids``, which just ended (or are being
    deleted), in the caller's transaction: cancel or release those it decides."""
    frontier = list(ids)
    while frontier:
        children = set(
            Dependency.objects.filter(parent_id__in=frontier, child__status=WAITING).values_list(
                "child_id", flat=True
            )
        )
        if not children:
            return
        locked = dict(
            Job.objects.select_for_update()
            .filter(pk__in=children, status=WAITING)
            .order_by("pk")
            .values_list("pk", "queue")
        )
        cancel, ready = _decide(locked)
        frontier = _cancel(cancel, now)
        _release([pk for pk in locked if pk in ready], {locked[pk] for pk in ready}, now)


def _decide(children: Iterable[Any]) -> tuple[dict[tuple[Any, str, str], list[Any]], set[Any]]:
    """Of the locked waiting ``children``: those to cancel, by the parent that causes it
    (id, name, status), and those whose every parent has ended."""
    edges = (
        Dependency.objects.filter(child_id__in=list(children))
        .order_by("id")
        .values_list(
            "child_id",
            "parent_id",
            "parent_name",
            "on_parent_failure",
            "parent__status",
            "parent_final",
        )
    )
    pending, caused = set(), {}
    for child, parent, name, policy, status, final in edges:
        status = parent_status(status, final)
        if status not in ENDED:
            pending.add(child)
        elif status != DONE and policy == OnParentFailure.CANCEL and child not in caused:
            caused[child] = (parent, name, status)
    cancel: dict[tuple[Any, str, str], list[Any]] = defaultdict(list)
    for child, cause in caused.items():
        cancel[cause].append(child)
    ready = {child for child in children if child not in pending and child not in caused}
    return cancel, ready


def _cancel(cancel: dict[tuple[Any, str, str], list[Any]], now: datetime) -> list[Any]:
    """Cancel waiting dependents, each naming its parent; return those with dependents."""
    ended: list[Any] = []
    for (parent, name, status), children in cancel.items():
        error = f"cancelled: parent {name} ({parent}) {status}"
        Job.objects.filter(pk__in=children, status=WAITING).update(
            status=CANCELLED,
            error=error,
            error_class=PARENT_ENDED,
            finished_at=now,
            updated_at=now,
        )
        for child in children:
            logger.info("job=%s transition=cancel status=cancelled cause=%s", child, error)
        ended += Job.objects.filter(pk__in=children, has_dependents=True).values_list(
            "pk", flat=True
        )
    return ended


def _release(ready: list[Any], queues: set[str], now: datetime, source: str = WAITING) -> None:
    """Queue the ``ready`` dependents (locked, in ``source``) with their parents' outcomes."""
    if not ready:
        return
    outcomes: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    rows = (
        Dependency.objects.filter(child_id__in=ready)
        .order_by("id")
        .values_list(
            "child_id",
            "parent_id",
            "parent_name",
            "parent__status",
            "parent_final",
            "parent__result",
            "parent__error",
        )
    )
    for child, parent, name, status, final, result, error in rows:
        outcomes[child].append(
            {
                "id": str(parent),
                "name": name,
                "status": parent_status(status, final),
                "result": result,
                "error": error,
            }
        )
    for child in ready:
        Job.objects.filter(pk=child, status=source).update(
            status=QUEUED, parent_results=outcomes[child], updated_at=now
        )
        logger.info("job=%s transition=ready status=queued parents=%s", child, len(outcomes[child]))
    if queues:
        notify.notify(queues)


def retried(*, ids: Iterable[Any], now: datetime) -> None:
    """Settle the jobs ``ids`` an operator just requeued (locked by the caller's UPDATE):
    their dependents cancelled because of them wait again (``reopen``); and such a job
    that has parents of its own waits for those still unfinished, or runs with their
    outcomes as they are now (an explicit retry overrides the ``cancel`` policy)."""
    ids = list(ids)
    reopen(ids=ids, now=now)
    edges = Dependency.objects.filter(child_id__in=ids).values_list(
        "child_id", "parent__status", "parent_final"
    )
    children, pending = set(), set()
    for child, status, final in edges:
        children.add(child)
        if parent_status(status, final) not in ENDED:
            pending.add(child)
    if pending:
        Job.objects.filter(pk__in=pending, status=QUEUED).update(
            status=WAITING, parent_results=None, updated_at=now
        )
    if ready := children - pending:
        _release(list(ready), set(), now, source=QUEUED)


def reopen(*, ids: Iterable[Any], now: datetime) -> int:
    """Let the dependents cancelled because of the jobs ``ids`` (retried: unfinished again)
    wait again, and theirs down the graph; return how many. In the caller's transaction."""
    cancelled_by_parent = Q(child__status=CANCELLED, child__error_class=PARENT_ENDED)
    frontier, reopened = list(ids), 0
    while frontier:
        children = list(
            Dependency.objects.filter(cancelled_by_parent, parent_id__in=frontier)
            .values_list("child_id", flat=True)
            .distinct()
        )
        if not children:
            break
        reopened += Job.objects.filter(
            pk__in=children, status=CANCELLED, error_class=PARENT_ENDED
        ).update(
            status=WAITING,
            error=None,
            error_class=None,
            finished_at=None,
            parent_results=None,
            updated_at=now,
        )
        frontier = children
    if reopened:
        logger.info("transition=reopen status=waiting count=%s", reopened)
    return reopened


def waiting_on(job: Job) -> list[str]:
    """The parents a waiting job still waits for, as ``name (status)``."""
    edges = Dependency.objects.filter(child_id=job.pk).values_list(
        "parent_name", "parent__status", "parent_final"
    )
    found = [(name, parent_status(status, final)) for name, status, final in edges]
    return [f"{name} ({status})" for name, status in found if status not in ENDED]
