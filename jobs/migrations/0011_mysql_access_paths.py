"""Access paths for MariaDB and MySQL, which have neither partial indexes nor (MariaDB)
indexes on expressions.

Django builds the other indexes there without their conditions and leaves out the
expression ones (the claim order) and the conditional unique constraint (one active job
per idempotency key). In their place, on MySQL only:

- ``due_at``, a virtual column for ``COALESCE(run_after, created_at)`` (``DUE_AT``), and
  claim indexes that lead with ``status``: a claim reads the queued entries in claim
  order and never a finished row, whatever their number (``Job.objects.claimable``
  orders by the column there);
- ``idempotency_active``, a virtual column holding the key while the job is queued or
  processing (else NULL, which a unique index lets repeat), under a unique index;
- ``(status, ...)`` indexes for the partial ones that count processing jobs;
- the app's tables in ``utf8mb4`` with the binary collation, whatever the database's
  default: idempotency keys, queue names, concurrency keys and task names compare exactly
  (case and accents count), as on PostgreSQL and SQLite.

The columns are the database's own (Django's model does not declare them): inserts and
updates never name them. Other databases: nothing to do.
"""

from django.db import migrations

TABLE = "jobs_job"
ADD = [
    "ADD COLUMN due_at datetime(6) GENERATED ALWAYS AS (COALESCE(run_after, created_at)) VIRTUAL",
    "ADD COLUMN idempotency_active varchar(200) GENERATED ALWAYS AS "
    "(CASE WHEN status IN ('queued', 'processing') THEN idempotency_key END) VIRTUAL",
    "ADD UNIQUE INDEX jobs_idempotency_active_my (idempotency_active)",
    "ADD INDEX jobs_claim_my_idx (status, queue, priority DESC, due_at)",
    "ADD INDEX jobs_claim_any_my_idx (status, priority DESC, due_at)",
    "ADD INDEX jobs_queue_status_my_idx (status, queue)",
    "ADD INDEX jobs_key_status_my_idx (status, concurrency_key)",
]
DROP = [
    "DROP INDEX jobs_key_status_my_idx",
    "DROP INDEX jobs_queue_status_my_idx",
    "DROP INDEX jobs_claim_any_my_idx",
    "DROP INDEX jobs_claim_my_idx",
    "DROP INDEX jobs_idempotency_active_my",
    "DROP COLUMN idempotency_active",
    "DROP COLUMN due_at",
]


def add(apps, schema_editor):
    if schema_editor.connection.vendor != "mysql":
        return
    for model in apps.get_app_config("jobs").get_models():
        table = schema_editor.quote_name(model._meta.db_table)
        schema_editor.execute(
            f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )
    schema_editor.execute(f"ALTER TABLE {TABLE} {', '.join(ADD)}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "mysql":
        schema_editor.execute(f"ALTER TABLE {TABLE} {', '.join(DROP)}")


class Migration(migrations.Migration):
    atomic = False  # DDL: MySQL cannot roll it back, and Django refuses it in a transaction
    dependencies = [
        ("jobs", "0010_failed_cause_newest"),
    ]

    operations = [migrations.RunPython(add, drop)]
