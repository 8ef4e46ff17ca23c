"""The job list's "has error" filter, newest first, read from an index of the jobs that
have an error (failed, or retrying after a failed attempt: a few in a hundred), not by
walking every job newest first until 50 with an error turn up (1,250 rows a page when
4% have one).

Only where indexes can be partial (PostgreSQL, SQLite): on MariaDB/MySQL it would be a
full index on ``created_at``, a copy of ``jobs_created_idx`` written by every insert.
The model's ``Meta`` declares it (so that SQLite, which rebuilds a table to alter it,
builds it again), and this migration builds it itself. On PostgreSQL it is built
``CONCURRENTLY``: a plain build would hold off every enqueue and transition while it
reads a large table.
"""

from django.db import migrations, models

NAME = "jobs_error_created_idx"


def add(apps, schema_editor):
    connection = schema_editor.connection
    if not connection.features.supports_partial_indexes:
        return
    if connection.vendor == "postgresql":
        # A build interrupted by a failure leaves an invalid index behind: build it again.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
        concurrently = "CONCURRENTLY "
    else:
        concurrently = ""
    schema_editor.execute(
        f"CREATE INDEX {concurrently}{NAME} ON jobs_job (created_at DESC) WHERE error IS NOT NULL"
    )


def drop(apps, schema_editor):
    connection = schema_editor.connection
    if connection.features.supports_partial_indexes:
        concurrently = "CONCURRENTLY " if connection.vendor == "postgresql" else ""
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction
    dependencies = [("jobs", "0012_failure_cause_statistics")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(add, drop)],
            state_operations=[
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("error__isnull", False)),
                        fields=["-created_at"],
                        name="jobs_error_created_idx",
                    ),
                )
            ],
        )
    ]
