"""The benchmarks' bulk loads still fit the job table (each writes rows with SQL of its
own, so a new NOT NULL column breaks them without any other test noticing)."""

import pytest
from django.db import connection

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
        (purge.FILL, [200]),
    ],
    ids=["admin_scale", "stats", "purge"],
)
def test_postgres_loads_fit_the_table(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    assert Job.objects.count() == 200
