from django.db import migrations, models

# Dropping an index on SQLite drops its planner statistics (see 0004): seed the
# recreated index's again.
STAT = "1000 1"


def seed_sqlite_stat(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DELETE FROM sqlite_stat1 WHERE idx = 'jobs_idempotency_active'")
        cursor.execute(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) "
            "VALUES ('jobs_job', 'jobs_idempotency_active', %s)",
            [STAT],
        )
        cursor.execute("ANALYZE sqlite_schema")  # reload them into this connection's planner


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_claim_any_index"),
    ]

    operations = [
        # Reversed, this runs last: after the previous index is back.
        migrations.RunPython(migrations.RunPython.noop, seed_sqlite_stat),
        migrations.RemoveConstraint(
            model_name="job",
            name="jobs_idempotency_active",
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("idempotency_key__isnull", False), ("status__in", ["queued", "processing"])
                ),
                fields=("idempotency_key",),
                name="jobs_idempotency_active",
            ),
        ),
        migrations.RunPython(seed_sqlite_stat, migrations.RunPython.noop),
    ]
