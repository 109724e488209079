"""Indexes of materialized views: ``pk_field`` and Django ``Index`` declarations rendered
into ``CREATE INDEX`` statements (names truncated the way PostgreSQL would)."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from django.db.models import Index, Q

from .conf import POSTGRES_MAX_IDENTIFIER_BYTES
from .exceptions import InvalidViewError
from .sql import qualified_name, quote_identifier, quote_literal, quote_qualified_name
from .views import BasePostgresView, describe

__all__ = ["IndexDefinition", "index_definitions", "index_name", "truncate_identifier"]


@dataclass(frozen=True)
class IndexDefinition:
    """An index on a materialized view, independent of the schema it is created in."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    method: str | None = None
    where: str | None = None
    opclasses: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    # Storage parameters as PostgreSQL spells them (``fillfactor = 70``), from Django's
    # PostgreSQL indexes; their values are validated there.
    storage_parameters: tuple[str, ...] = ()
    tablespace: str | None = None

    def create_sql(self, schema: str, view_name: str) -> str:
        columns = []
        for position, column in enumerate(self.columns):
            descending = column.startswith("-")
            rendered = quote_identifier(column.lstrip("-"))
            if position < len(self.opclasses) and self.opclasses[position]:
                rendered += f" {quote_qualified_name(self.opclasses[position])}"
            if descending:
                rendered += " DESC"
            columns.append(rendered)
        unique = "UNIQUE " if self.unique else ""
        using = f" USING {quote_identifier(self.method)}" if self.method else ""
        include = ""
        if self.include:
            include = f" INCLUDE ({', '.join(quote_identifier(c) for c in self.include)})"
        storage = f" WITH ({', '.join(self.storage_parameters)})" if self.storage_parameters else ""
        tablespace = f" TABLESPACE {quote_identifier(self.tablespace)}" if self.tablespace else ""
        where = f" WHERE {self.where}" if self.where else ""
        target = qualified_name(schema, view_name)
        return (
            f"CREATE {unique}INDEX {quote_identifier(self.name)} ON {target}{using} "
            f"({', '.join(columns)}){include}{storage}{tablespace}{where}"
        )


def index_definitions(view: type[BasePostgresView]) -> list[IndexDefinition]:
    """The unique index from ``pk_field`` and the ``indexes`` of a materialized view.

    Index names share the schema's namespace with the views, so two indexes of one view
    with the same name are an error that names the view, not a failed sync.
    """
    definitions = []
    pk_field = getattr(view, "pk_field", None)
    if pk_field:
        columns = (pk_field,) if isinstance(pk_field, str) else tuple(pk_field)
        definitions.append(
            IndexDefinition(
                name=index_name(view.view_name, columns),
                columns=columns,
                unique=True,
            )
        )
    for index in getattr(view, "indexes", ()) or ():
        definitions.append(_index_from_django(view, index))
    seen: set[str] = set()
    for definition in definitions:
        if definition.name in seen:
            raise InvalidViewError(
                f"View {describe(view)} has two indexes named {definition.name!r} (from "
                "`pk_field` and `indexes`). Give each index in `indexes` its own `name`."
            )
        seen.add(definition.name)
    return definitions


def index_name(view_name: str, columns: Sequence[str]) -> str:
    """``<view>_<col>[_<col>...]`` as django-orm-views named it, shortened with a hash
    suffix when it would pass PostgreSQL's 63-byte limit."""
    name = "_".join([view_name, *(column.lstrip("-") for column in columns)])
    return truncate_identifier(name)


def truncate_identifier(name: str, limit: int = POSTGRES_MAX_IDENTIFIER_BYTES) -> str:
    """``name`` if it fits in ``limit`` bytes (UTF-8, as PostgreSQL counts), else its
    first bytes (whole characters only) and a 4-character hash of the whole name.

    For ASCII names this is Django's ``truncate_name``: the same names as migrations give.
    """
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()[:4]
    kept = name.encode()[: limit - len(digest)].decode(errors="ignore")
    return kept + digest


def _index_from_django(view: type[BasePostgresView], index: Any) -> IndexDefinition:
    # Imported here: django.contrib.postgres imports a PostgreSQL driver, and the package
    # itself never does (Django's backend chooses psycopg 3 or psycopg2).
    from django.contrib.postgres.indexes import PostgresIndex

    if not isinstance(index, Index):
        raise InvalidViewError(
            f"View {describe(view)} lists {index!r} in `indexes`. Use django.db.models.Index."
        )
    if index.expressions:
        raise InvalidViewError(
            f"View {describe(view)}: expression indexes are not supported in `indexes`. "
            "Index columns of the view by name (Index(fields=[...]))."
        )
    where = None
    if index.condition is not None:
        where = _render_condition(view, index.condition)
    columns = tuple(index.fields)
    name = index.name or index_name(view.view_name, columns)
    # Only Django's PostgreSQL indexes name an access method (their suffix: gin, gist,
    # brin, ...); a plain Index or a subclass of it is a B-tree.
    storage_parameters: tuple[str, ...] = ()
    method = None
    if isinstance(index, PostgresIndex):
        method = index.suffix
        storage_parameters = tuple(index.get_with_params())
    return IndexDefinition(
        name=truncate_identifier(name),
        columns=columns,
        unique=False,
        method=method,
        where=where,
        opclasses=tuple(index.opclasses),
        include=tuple(index.include),
        storage_parameters=storage_parameters,
        tablespace=index.db_tablespace or None,
    )


CONDITION_OPERATORS = {
    "exact": "=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "IN",
    "isnull": "IS",
}


def _render_condition(view: type[BasePostgresView], condition: Any) -> str:
    """Render a partial index's ``Q`` condition as SQL over the view's columns.

    Only literal values are accepted: they are written into the DDL (an index predicate
    cannot take parameters), through :func:`_literal`.
    """
    if not isinstance(condition, Q) or condition.connector != Q.AND or condition.negated:
        raise InvalidViewError(
            f"View {describe(view)}: an index condition must be a Q of simple lookups "
            "joined by AND, such as Q(active=True)."
        )
    parts = []
    for child in condition.children:
        if not isinstance(child, tuple):
            raise InvalidViewError(
                f"View {describe(view)}: nested Q objects are not supported in index conditions."
            )
        lookup, value = child
        column, _, operator = lookup.partition("__")
        operator = operator or "exact"
        if operator not in CONDITION_OPERATORS:
            raise InvalidViewError(
                f"View {describe(view)}: lookup {lookup!r} is not supported in index "
                f"conditions; use one of {', '.join(sorted(CONDITION_OPERATORS))}."
            )
        quoted = quote_identifier(column)
        if operator == "isnull" or (operator == "exact" and value is None):
            # As in a queryset, `column=None` means IS NULL (`= NULL` is never true).
            is_null = value if operator == "isnull" else True
            parts.append(f"{quoted} IS {'' if is_null else 'NOT '}NULL")
        elif operator == "in":
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                _condition_value_error(view, lookup, value)
            values = [_literal(view, lookup, item) for item in value]
            if not values:
                _condition_value_error(view, lookup, value)
            parts.append(f"{quoted} IN ({', '.join(values)})")
        else:
            parts.append(
                f"{quoted} {CONDITION_OPERATORS[operator]} {_literal(view, lookup, value)}"
            )
    return " AND ".join(parts)


def _condition_value_error(view: type[BasePostgresView], lookup: str, value: Any) -> NoReturn:
    raise InvalidViewError(
        f"View {describe(view)}: the index condition {lookup}={value!r} does not compare "
        "with a literal value. Use None, a bool, a number, a string, a date or a time (a "
        "non-empty list of them for __in)."
    )


def _literal(view: type[BasePostgresView], lookup: str, value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, decimal.Decimal)):
        if not math.isfinite(value):
            _condition_value_error(view, lookup, value)
        return str(value)
    if isinstance(value, str) and "\0" in value:
        raise InvalidViewError(
            f"View {describe(view)}: the index condition {lookup}={value!r} holds a NUL "
            "character, which no SQL string can. Remove it from the condition."
        )
    if isinstance(value, (str, uuid.UUID)):
        return quote_literal(str(value))
    if isinstance(value, (datetime.date, datetime.time)):
        # datetime.datetime is a date too; isoformat keeps its UTC offset.
        return quote_literal(value.isoformat())
    _condition_value_error(view, lookup, value)
