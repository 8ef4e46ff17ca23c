"""Lookups on unfinished jobs name exactly the statuses of the partial index that serves
them. ``status IN (queued, processing, waiting)`` does not imply the indexes' ``status IN
(queued, processing)``, so such a lookup reads every unfinished job's row instead (1.5 s
at ten million jobs for a duplicate idempotency key, or for the failures view)."""

import pytest
from django.db import connection, transaction

from jobs.admin import failures
from jobs.lifecycle import create
from jobs.models import Job

pytestmark = pytest.mark.django_db


def plan_of(queryset) -> str:
    with transaction.atomic():
        with connection.cursor() as cursor:  # an empty table: make any index the choice
            cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


# SQLite does not match these partial indexes to a query with bound parameters (its
# planner compares the index's literals); MySQL has no partial indexes.
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans")


@postgres_only
def test_a_held_idempotency_key_is_found_through_its_partial_index():
    assert "jobs_idempotency_active" in plan_of(create.holder_of("key"))


@postgres_only
def test_retrying_causes_are_counted_through_their_partial_index():
    assert "jobs_retrying_cause_idx" in plan_of(failures.retrying())


def test_the_holder_of_a_key_is_returned_on_a_duplicate_enqueue():
    first, created = create.enqueue(task="echo", idempotency_key="k")
    again, created_again = create.enqueue(task="echo", idempotency_key="k")
    assert created and not created_again and again.pk == first.pk
    assert Job.objects.count() == 1


@pytest.mark.skipif(not connection.features.supports_partial_indexes, reason="no partial indexes")
def test_the_job_list_of_jobs_with_an_error_reads_their_own_index():
    """The admin's "has error" filter, newest first: an index of those jobs alone, not the
    newest of every job until 50 with an error turn up."""
    page = Job.objects.filter(error__isnull=False).order_by("-created_at", "-pk")[:51]
    if connection.vendor == "postgresql":
        plan = plan_of(page)
    else:
        plan = page.explain()
    assert "jobs_error_created_idx" in plan, plan
