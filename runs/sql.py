"""SQL fragments and values of the runs' hot statements, written once instead of compiled by
the ORM on every call (the claim and the fence in ``runs.lease``, admission, the assistant
lookup, the finish and the thread's queue); their rows go through ``agentserver.rows``."""

from __future__ import annotations

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from runs.models import ACTIVE_RUN_STATUSES, Run

# The statuses of runs in flight, as a SQL list: ('pending', 'running').
ACTIVE_STATUSES_SQL = "(" + ", ".join(f"'{status}'" for status in ACTIVE_RUN_STATUSES) + ")"


def db_value(
    field: str, value: object, connection: BaseDatabaseWrapper, model: type[models.Model] = Run
) -> object:
    """A Python value as ``connection``'s driver wants it for ``model.field`` (UUIDs are hex
    text on SQLite). The caller looks the connection up once: it is a thread-local lookup."""
    return model._meta.get_field(field).get_db_prep_save(value, connection)
