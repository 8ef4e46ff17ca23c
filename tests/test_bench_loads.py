"""The benchmarks' bulk loads still fit the job table (each writes rows with SQL of its
own, so a new NOT NULL column breaks them without any other test noticing)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bench import admin_scale, purge, scale, stats
from jobs.models import Job

pytestmark = pytest.mark.django_db


def test_scale_load_fits_the_table():
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(scale.MYSQL_LOAD.replace("seq_1_to_%s", "seq_1_to_50"), [0])
        else:
            sql = scale.PG_LOAD if connection.vendor == "postgresql" else scale.SQLITE_LOAD
            cursor.execute(sql, [50])
    assert Job.objects.filter(status="done", worker_id="preload").count() == 50


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only loads")
@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (admin_scale.LOAD_SQL, {"rows": 200}),
        (stats.LOAD, {"rows": 200}),
        (purge.FILL, [200, 150]),
    ],
    ids=["admin_scale", "stats", "purge"],
)
def test_postgres_loads_fit_the_table(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    assert Job.objects.count() == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only loads")
def test_load_bare_loads_and_rebuilds_the_indexes():
    from bench.common import load_bare

    def indexes():
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs_job'")
        return cursor.fetchone()[0]

    with connection.cursor() as cursor:
        before = indexes()
        load_bare(cursor, purge.FILL, [200, 150])
        assert indexes() == before
    assert Job.objects.count() == 200
    month_ago = timezone.now() - timedelta(days=30)
    assert Job.objects.filter(finished_at__lt=month_ago).count() == 150  # the old, purged
