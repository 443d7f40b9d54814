"""Model rows read and written with statements built once per model, for the hot paths:
the ORM compiles a query and resolves its columns again on every call, which costs more CPU
than the database spends on these small statements (admission, the claim, the assistant
lookup, thread creation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TypeVar

from django.db import connections, models

M = TypeVar("M", bound=models.Model)


def model_columns(model: type[models.Model], using: str = "default") -> str:
    """Every column of ``model``, named. Not ``*``: a prepared statement whose result gains a
    column (a migration adding one) fails with "cached plan must not change result type" on
    every later use of its connection."""
    quote = connections[using].ops.quote_name
    return ", ".join(quote(field.column) for field in model._meta.concrete_fields)


def fetch_instance(model: type[M], sql: str, params: Sequence | Mapping, using: str = "default") -> M | None:
    """The first row of ``sql``, which selects (or returns) ``model_columns(model)``, as an
    instance: what ``Model.objects.raw`` does, without building a ``RawQuerySet`` and resolving
    its columns again on every call (0.05-0.1 ms of the ~0.15-0.25 ms of the hot statements)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for position, converters, column in _converters(model, using):
        for convert in converters:
            values[position] = convert(values[position], column, connection)
    return model.from_db(using, None, values)


def fetch_by_key(model: type[M], using: str = "default", **key: object) -> M | None:
    """The row of ``model`` whose fields equal ``key`` (a key: one row at most), or None:
    ``model.objects.filter(**key).first()`` without compiling the query each time, and
    without the ORDER BY that ``first()`` adds."""
    connection = connections[using]
    fields = [model._meta.get_field(name) for name in key]
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, key.values(), strict=True)]
    return fetch_instance(model, _select_by_sql(model, tuple(key), using), params, using)


@cache
def _select_by_sql(model: type[models.Model], names: tuple[str, ...], using: str) -> str:
    quote = connections[using].ops.quote_name
    where = " AND ".join(f"{quote(model._meta.get_field(name).column)} = %s" for name in names)
    return f"SELECT {model_columns(model, using)} FROM {quote(model._meta.db_table)} WHERE {where}"


@cache
def _converters(model: type[models.Model], using: str) -> list[tuple[int, list, object]]:
    """Per column of ``model_columns(model)``: the converters from the database's value to the
    field's (JSON text, SQLite's UUID and datetime text). They depend on the backend and the
    settings only, not on which thread's connection asked first."""
    connection = connections[using]
    found = []
    for position, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            found.append((position, converters, column))
    return found


def insert_row(instance: M, using: str = "default") -> M:
    """``instance.save(force_insert=True)`` with a statement built once per model: the ORM
    compiles the INSERT again on every call (~0.15 ms of a run's admission). Returns it."""
    with connections[using].cursor() as cursor:
        cursor.execute(*insert_statement(instance, using))
    return instance


def insert_statement(instance: models.Model, using: str = "default") -> tuple[str, list]:
    """``insert_row``'s statement, for a caller that sends it inside another (the instance
    counts as saved)."""
    model, connection = type(instance), connections[using]
    fields = model._meta.concrete_fields
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    instance._state.adding, instance._state.db = False, using
    return _insert_sql(model, using), values


def update_row(instance: models.Model, field_names: tuple[str, ...], using: str = "default") -> None:
    """``instance.save(update_fields=field_names)`` with a statement built once per model and
    fields (an ``auto_now`` field among them is set, as ``save`` does)."""
    with connections[using].cursor() as cursor:
        cursor.execute(*update_statement(instance, field_names, using))


def update_statement(instance: models.Model, field_names: tuple[str, ...], using: str = "default") -> tuple[str, list]:
    """``update_row``'s statement, for a caller that sends it inside another."""
    model, connection = type(instance), connections[using]
    fields = [model._meta.get_field(name) for name in field_names]
    values = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields]
    pk = model._meta.pk.get_db_prep_save(instance.pk, connection)
    return _update_sql(model, field_names, using), [*values, pk]


@cache
def _insert_sql(model: type[models.Model], using: str) -> str:
    placeholders = ", ".join(["%s"] * len(model._meta.concrete_fields))
    return f"INSERT INTO {model._meta.db_table} ({model_columns(model, using)}) VALUES ({placeholders})"


@cache
def _update_sql(model: type[models.Model], field_names: tuple[str, ...], using: str) -> str:
    quote = connections[using].ops.quote_name
    assignments = ", ".join(f"{quote(model._meta.get_field(name).column)} = %s" for name in field_names)
    return f"UPDATE {model._meta.db_table} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
