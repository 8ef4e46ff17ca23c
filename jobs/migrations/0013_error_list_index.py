"""The job list's "has error" filter, newest first, read from an index of the jobs that
have an error (failed, or retrying after a failed attempt: a few in a hundred), not by
walking every job newest first until 50 with an error turn up (1,250 rows a page when
4% have one).

Only where indexes can be partial (PostgreSQL, SQLite): on MariaDB/MySQL it would be a
full index on ``created_at``, a copy of ``jobs_created_idx`` written by every insert.
Not in the model's ``Meta`` for that reason.
"""

from django.db import migrations

NAME = "jobs_error_created_idx"


def add(apps, schema_editor):
    if schema_editor.connection.features.supports_partial_indexes:
        schema_editor.execute(
            f"CREATE INDEX {NAME} ON jobs_job (created_at DESC) WHERE error IS NOT NULL"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.features.supports_partial_indexes:
        schema_editor.execute(f"DROP INDEX {NAME}")


class Migration(migrations.Migration):
    dependencies = [("jobs", "0012_failure_cause_statistics")]

    operations = [migrations.RunPython(add, drop)]
