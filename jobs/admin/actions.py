"""The job admin's actions: retry, cancel, run next and delete, on the selected jobs or
on every job the list's filter matches.

Every action goes through ``jobs.lifecycle``'s set-based verbs and reports how many jobs
changed and how many were skipped, and why. Selected rows (one page) are acted on at
once, up to ``JOBS_MAX_BULK``. "Select all N" (Django's ``select_across``) first shows a
confirmation page with the count by status, then runs ``lifecycle.apply_to_all``: the
verb in batches of ``JOBS_MAX_BULK``, each locking only its own rows, so it is safe
while workers run. "Run next" on a filter moves its queued jobs to the front: top
priority (100), due now.
"""

import logging

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.actions import delete_selected as confirm_delete
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from jobs import lifecycle
from jobs.conf import conf

logger = logging.getLogger(__name__)

EVERYWHERE = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]

# What each verb does, as the "apply to all" confirmation page says it.
ACTION_TEXT = {
    "retry": "requeue them to run as soon as possible (failed, cancelled and done jobs)",
    "cancel": "cancel them (queued, waiting and processing jobs: a running job's worker "
    "finds out at its next heartbeat and its result is discarded)",
    "run_next": "move them to the front of their queue: top priority, due now (queued jobs)",
    "delete": "delete them and their attempt history (all but running jobs)",
}

WHY = {
    "retry": "only failed, cancelled or done jobs are retried",
    "cancel": "only queued, waiting or processing jobs are cancelled",
    "run_next": "only queued jobs can be moved",
    "delete": "running jobs are not deleted: cancel them first",
}


class JobActions:
    """The actions of ``JobAdmin`` (a ``ModelAdmin`` mixin)."""

    # -- actions --------------------------------------------------------------------------

    def report(
        self,
        request: HttpRequest,
        result: lifecycle.BulkResult,
        done: str,
        why: str,
        batches: int | None = None,
    ) -> None:
        """Tell the operator how many jobs changed, and how many were skipped and why."""
        message = f"{result.changed} job{'s' if result.changed != 1 else ''} {done}"
        message += f" in {batches} batch{'es' if batches != 1 else ''}." if batches else "."
        if result.skipped:
            total = sum(result.skipped.values())
            found = ", ".join(f"{n} {status}" for status, n in sorted(result.skipped.items()))
            message += f" {total} skipped: {found} ({why})."
        level = messages.WARNING if result.skipped else messages.SUCCESS
        self.message_user(request, message, level)
        logger.info(
            "admin user=%s action=%s changed=%s skipped=%s",
            request.user.get_username(),
            done,
            result.changed,
            result.skipped,
        )

    def too_many(self, request: HttpRequest, queryset: QuerySet) -> bool:
        """Refuse (and say so) an action on more than JOBS_MAX_BULK jobs."""
        if (count := queryset.count()) <= conf.MAX_BULK:
            return False
        self.message_user(
            request,
            f"{count} jobs selected; one action handles at most {conf.MAX_BULK} "
            "(JOBS_MAX_BULK). Nothing changed.",
            messages.ERROR,
        )
        return True

    def act(
        self, request: HttpRequest, queryset: QuerySet, verb: str, done: str
    ) -> HttpResponse | None:
        """Apply ``verb`` to the selected jobs (at most JOBS_MAX_BULK), or, when the operator
        chose "select all N" (``select_across``), to every job the filter matches, in
        batches, once they confirm the count."""
        if request.POST.get("select_across") == "1":
            return self.act_on_all(request, queryset, verb, done)
        if self.too_many(request, queryset):
            return None
        many, _ = lifecycle.VERBS[verb]
        self.report(request, many(ids=queryset), done, WHY[verb])
        return None

    def act_on_all(
        self, request: HttpRequest, queryset: QuerySet, verb: str, done: str
    ) -> HttpResponse | None:
        if request.POST.get("confirmed") != "yes":
            found = dict(queryset.order_by().values_list("status").annotate(n=Count("pk")))
            _, allowed = lifecycle.VERBS[verb]
            context = {
                **self.admin_site.each_context(request),
                "title": "Apply to all matching jobs?",
                "opts": self.opts,
                "action": request.POST.get("action"),
                "sample": request.POST.get(ACTION_CHECKBOX_NAME, ""),
                "description": ACTION_TEXT[verb],
                "count": sum(found.values()),
                "changes": sum(n for status, n in found.items() if status in allowed),
                "by_status": sorted(found.items()),
                "filters": request.GET.urlencode(),
                "batch_size": conf.MAX_BULK,
            }
            return TemplateResponse(request, "admin/jobs/confirm_all.html", context)
        result = lifecycle.apply_to_all(verb=verb, jobs=queryset)
        self.report(request, result, done, WHY[verb], batches=result.batches)
        return None

    @admin.action(description="Retry / requeue", permissions=["change"], location=EVERYWHERE)
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.act(request, queryset, "retry", "requeued")

    @admin.action(description="Cancel", permissions=["change"], location=EVERYWHERE)
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.act(request, queryset, "cancel", "cancelled")

    @admin.action(
        description="Run next (move to the front of the queue)",
        permissions=["change"],
        location=EVERYWHERE,
    )
    def run_next(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.act(request, queryset, "run_next", "moved to the front")

    @admin.action(description="Delete selected jobs", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        why = WHY["delete"]
        if request.POST.get("select_across") == "1":
            return self.act_on_all(request, queryset, "delete", "deleted")
        if self.too_many(request, queryset):
            return None
        if not request.POST.get("post"):
            return confirm_delete(self, request, queryset)  # the confirmation page
        self.report(request, lifecycle.delete_many(ids=queryset), "deleted", why)
        return None
