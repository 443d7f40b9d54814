"""Helpers for the hot statements written as SQL once instead of compiled by the ORM on every
call: the claim and the fence (``runs.lease``), admission, the assistant lookup, the finish and
the thread's queue."""

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


def model_columns(model: type[models.Model], using: str = "default") -> str:
    """Every column of ``model``, named. Not ``*``: a prepared statement whose result gains a
    column (a migration adding one) fails with "cached plan must not change result type" on
    every later use of its connection."""
    quote = connections[using].ops.quote_name
    return ", ".join(quote(field.column) for field in model._meta.concrete_fields)
