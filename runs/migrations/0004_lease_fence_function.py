"""The fence of checkpoint writes as a Postgres function, so it travels in the writes' pipeline.

``agentserver_hold_lease(run, token)`` share-locks the run's row while the attempt still owns it
(status running, same token) and raises SQLSTATE ``AS001`` otherwise, which aborts the rest of
the pipeline: the writes need no separate round trip to learn whether they may happen.
SQLite has no such functions; there the fence is a SELECT checked before the writes.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION agentserver_hold_lease(run uuid, token uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM runs_run
     WHERE run_id = run AND lease_token = token AND status = 'running'
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease of run % lost', run USING ERRCODE = 'AS001';
    END IF;
END
$$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS agentserver_hold_lease(uuid, uuid)")


class Migration(migrations.Migration):

    dependencies = [
        ("runs", "0003_search_and_queue_indexes"),
    ]

    operations = [migrations.RunPython(create_function, drop_function)]
