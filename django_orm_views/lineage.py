"""Lineage: what each view reads (views, tables, columns), as a graph for people (Mermaid,
Graphviz) and as the answer to "which views read this table or column?".

The catalog records what PostgreSQL resolved when it created each view; for a declared
view not built yet, the parser's references to other views stand in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connections

from .exceptions import ViewError
from .introspection import (
    dependents_closure,
    direct_readers,
    read_catalog,
    resolve_relation,
    view_reads,
)
from .plan import SyncPlan

__all__ = ["ViewLineage", "dot", "lineage", "mermaid", "readers_of"]


@dataclass(frozen=True)
class ViewLineage:
    """What one view reads directly."""

    name: str
    depends_on: tuple[str, ...]
    reads_tables: tuple[str, ...]
    reads_columns: tuple[str, ...]


def lineage(plan: SyncPlan) -> dict[str, ViewLineage]:
    """Every view of the plan (declared, in the database, or both), by name."""
    reads = view_reads(connections[plan.database], plan.schema)
    names = sorted(set(plan.rendered) | set(reads))
    found = {}
    for name in names:
        read = reads.get(name)
        declared = plan.rendered[name].dependencies if name in plan.rendered else frozenset()
        found[name] = ViewLineage(
            name=name,
            depends_on=tuple(sorted(read.views if read is not None else declared)),
            reads_tables=tuple(sorted(read.tables)) if read is not None else (),
            reads_columns=tuple(sorted(read.columns)) if read is not None else (),
        )
    return found


def edges(schema: str, views: Iterable[ViewLineage]) -> list[tuple[str, str]]:
    """``(a, b)`` for each "b reads a", by qualified names, sorted."""
    found: set[tuple[str, str]] = set()
    for view in views:
        reader = f"{schema}.{view.name}"
        found.update((f"{schema}.{name}", reader) for name in view.depends_on)
        found.update((table, reader) for table in view.reads_tables)
    return sorted(found)


def _node_id(kind: str, name: str) -> str:
    # Mermaid ids allow letters, digits and underscores only (a dot splits them); the
    # prefix keeps clear of its keywords, the digest tells apart names that differ
    # only by what was replaced.
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if safe != name.replace(".", "_"):
        safe += "_" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{kind}_{safe}"


def mermaid(schema: str, views: Iterable[ViewLineage]) -> str:
    """A Mermaid flowchart: tables as cylinders, views as boxes, ``a --> b`` for each
    "b reads a"."""
    views = list(views)
    pairs = edges(schema, views)
    view_names = {f"{schema}.{view.name}" for view in views}
    nodes = sorted({name for pair in pairs for name in pair} | view_names)
    ids = {name: _node_id("v" if name in view_names else "t", name) for name in nodes}
    lines = ["flowchart LR"]
    for name in nodes:
        label = name.replace('"', "#quot;")
        shape = f'["{label}"]' if name in view_names else f'[("{label}")]'
        lines.append(f"    {ids[name]}{shape}")
    lines += [f"    {ids[read]} --> {ids[reader]}" for read, reader in pairs]
    return "\n".join(lines)


def _dot_quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(schema: str, views: Iterable[ViewLineage]) -> str:
    """A Graphviz digraph: tables as cylinders, an edge a -> b for each "b reads a"."""
    views = list(views)
    pairs = edges(schema, views)
    view_names = {f"{schema}.{view.name}" for view in views}
    tables = sorted({name for pair in pairs for name in pair} - view_names)
    lines = ["digraph views {", "    rankdir=LR;"]
    lines += [f"    {_dot_quote(name)} [shape=cylinder];" for name in tables]
    lines += [f"    {_dot_quote(name)} [shape=box];" for name in sorted(view_names)]
    lines += [f"    {_dot_quote(read)} -> {_dot_quote(reader)};" for read, reader in pairs]
    lines.append("}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Reader:
    """A view that reads a table or column, directly or through other views."""

    schema: str
    name: str
    kind: str
    direct: bool


def readers_of(database: str, schema: str, target: str) -> tuple[str, list[Reader]]:
    """The views of ``schema`` that read ``target`` (``TABLE`` or ``TABLE.COLUMN``, the
    table optionally schema-qualified), directly or through other views. Returns the
    target as resolved (``schema.table[.column]``) and the readers."""
    connection = connections[database]
    resolved = resolve_relation(connection, target)
    if resolved is None:
        raise ViewError(
            f"No table or column {target!r} on database '{database}'. Give TABLE, "
            "SCHEMA.TABLE or TABLE.COLUMN as PostgreSQL's search path finds it."
        )
    oid, table, attnum, column = resolved
    direct = direct_readers(connection, [(oid, attnum)])
    closure = dependents_closure(connection, [item.oid for item in direct])
    direct_oids = {item.oid for item in direct}
    # A view that points to a stored materialized view reads what that one reads.
    held = read_catalog(connection, schema).objects
    stored_directly = {(item.schema, item.name) for item in direct}
    readers = []
    for item in closure:
        if item.schema != schema:
            continue
        existing = held.get(item.name)
        storage = existing.storage if existing is not None else None
        readers.append(
            Reader(
                item.schema,
                item.name,
                existing.kind if existing is not None and storage else item.kind,
                item.oid in direct_oids or (storage, item.name) in stored_directly,
            )
        )
    label = f"{table}.{column}" if column else table
    return label, readers
