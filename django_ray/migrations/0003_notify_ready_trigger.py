"""On PostgreSQL, the table itself wakes idle workers: one NOTIFY per statement that inserts
READY rows of Django Tasks, with the queue name as payload, once for each queue among them.

A trigger does it, not ``enqueue()``, so an insert costs one round trip and a bulk insert
one notification per queue. NOTIFY is delivered when the transaction commits, and
dropped when it rolls back. Other databases get nothing: their workers poll.
"""

from django.db import migrations

FUNCTION = "django_ray_notify_ready"
CHANNEL = "django_ray_ready"  # django_ray.worker.wakeup.CHANNEL when this was written


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_ray", "TaskExecution")._meta.db_table)
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', ready.queue_name) FROM (SELECT DISTINCT "
        "queue_name FROM inserted WHERE state = 'READY' AND origin = 'tasks') AS ready; "
        "RETURN NULL; END $$"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {FUNCTION} AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
    )


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_ray", "TaskExecution")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON {table}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("django_ray", "0002_origins_and_signatures"),
    ]

    operations = [
        migrations.RunPython(create_trigger, drop_trigger, elidable=False),
    ]
