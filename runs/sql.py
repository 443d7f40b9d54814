"""SQL fragments and values of the runs' hot statements, written once instead of compiled by
the ORM on every call (the claim and the fence in ``runs.lease``, admission, the assistant
lookup, the finish and the thread's queue); their rows go through ``agentserver.rows``."""

from __future__ import annotations

from django.db import connections, models

from runs.models import ACTIVE_RUN_STATUSES, Run

# The statuses of runs in flight, as a SQL list: ('pending', 'running').
ACTIVE_STATUSES_SQL = "(" + ", ".join(f"'{status}'" for status in ACTIVE_RUN_STATUSES) + ")"


def db_value(
    field: str, value: object, using: str = "default", model: type[models.Model] = Run
) -> object:
    """A Python value as the database driver wants it for ``model.field`` (UUIDs are hex text
    on SQLite)."""
    return model._meta.get_field(field).get_db_prep_save(value, connections[using])
