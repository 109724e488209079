"""The views schema as the database holds it: its objects (with the package's markers)
and everything else in it, the working schemas beside it, read in one round trip;
columns, roles and statistics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..conf import PUBLIC_KEYWORD_ROLE
from .markers import (
    SCHEMA_MARKER_PREFIX,
    WorkingSchema,
    old_schema_prefix,
    parse_owner_marker,
    parse_working_schema,
    staging_schema_name,
    storage_schema_prefix,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

RELATION_KINDS = {
    "v": "view",
    "m": "materialized view",
    "r": "table",
    "p": "table",
    "f": "foreign table",
    "S": "sequence",
    "c": "composite type",
}


@dataclass(frozen=True)
class DatabaseObject:
    """A relation found in the views schema."""

    name: str
    kind: str
    fingerprint: str | None
    grantees: frozenset[str]
    populated: bool
    # Created by the package (it carries the package's marker).
    owned: bool = True
    extra_roles: frozenset[str] = frozenset()
    # The comments its users (or the declarations) gave it, and its options.
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    options: tuple[str, ...] = ()
    # For a view that points to a stored one (a materialized view, or a view one reads):
    # the storage schema that holds the real object, under the same name.
    storage: str | None = None
    # It points to a stored view that is gone (dropped by hand): rebuilt by a sync.
    stored_missing: bool = False
    # The generation (the sync that built it) and how many views it built, from its
    # marker.
    generation: str | None = None
    generation_size: int | None = None

    @property
    def materialized(self) -> bool:
        return self.kind == "materialized view"

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "materialized view")

    @property
    def relation_kind(self) -> str:
        """What the relation in the schema is: a view, for one that points to a stored
        materialized view."""
        return "view" if self.storage is not None else self.kind


@dataclass(frozen=True)
class StoredObject:
    """A relation in a storage schema, whether the package created it (it carries the
    package's marker) and whether anything still reads it."""

    schema: str
    name: str
    kind: str
    populated: bool
    referenced: bool
    owned: bool = True


@dataclass(frozen=True)
class CatalogSnapshot:
    """The views schema as the database holds it, read in one query."""

    schema: str
    schema_exists: bool
    schema_grantees: frozenset[str] = frozenset()
    objects: dict[str, DatabaseObject] = field(default_factory=dict)
    # Working schemas (staging, previous generations, storage) the package created:
    # recognised by their marker, never by name alone.
    working: tuple[WorkingSchema, ...] = ()
    # Objects in the views schema that are not relations (functions, types, ...).
    other_objects: tuple[str, ...] = ()
    # A schema with the staging schema's reserved name that the package did not create.
    foreign_staging: bool = False
    schema_comment: str | None = None
    # The relations of the storage schemas, by (schema, name).
    stored: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    # The storage schemas that hold anything at all (relations or other objects).
    occupied_storage: frozenset[str] = frozenset()
    # The previous generations, by schema name (read_catalog(with_previous=True)).
    generations: dict[str, CatalogSnapshot] = field(default_factory=dict)

    @property
    def leftover_schemas(self) -> tuple[str, ...]:
        """Every working schema the package created, whatever its role."""
        return tuple(sorted(item.name for item in self.working))

    def previous_generations(self) -> list[WorkingSchema]:
        """The previous generations, the newest first (those without a time last)."""
        found = [item for item in self.working if item.role == "previous"]
        return sorted(found, key=lambda item: -(item.replaced_at or 0.0))

    def kept_previous(self, keep_seconds: float, now: float) -> WorkingSchema | None:
        """The previous generation still kept: the newest, unless it is older than
        ``keep_seconds`` (or has no time: marked by an older version)."""
        generations = self.previous_generations()
        replaced_at = generations[0].replaced_at if generations else None
        if replaced_at is None or now - replaced_at >= keep_seconds:
            return None
        return generations[0]

    def schemas_to_drop(self, keep_seconds: float, now: float) -> list[str]:
        """The working schemas to drop now: what interrupted syncs left, every previous
        generation but the one kept, and storage schemas nothing points to any more."""
        kept = self.kept_previous(keep_seconds, now)
        return sorted(
            item.name
            for item in self.working
            if item.role in ("staging", "other") or (item.role == "previous" and item != kept)
        )

    @property
    def unreferenced_storage(self) -> list[StoredObject]:
        """Stored relations of the package's that nothing reads any more (no generation
        points to them). Anything else in a storage schema is never dropped."""
        return [item for item in self.stored.values() if item.owned and not item.referenced]

    @property
    def empty_storage(self) -> list[str]:
        """Storage schemas that hold nothing any more."""
        return [
            item.name
            for item in self.working
            if item.role == "storage" and item.name not in self.occupied_storage
        ]

    def needs_housekeeping(self, keep_seconds: float, now: float) -> bool:
        return bool(
            self.schemas_to_drop(keep_seconds, now)
            or self.unreferenced_storage
            or self.empty_storage
        )

    @property
    def generation(self) -> str | None:
        """The live generation: the one most of the package's views were built by (a
        view moved across keeps the generation that built it)."""
        counts = Counter(item.generation for item in self.objects.values() if item.generation)
        return counts.most_common(1)[0][0] if counts else None

    @property
    def lost_views(self) -> int:
        """How many of the views the live generation was built with are gone."""
        generation = self.generation
        built = [item for item in self.objects.values() if item.generation == generation]
        sizes = {item.generation_size for item in built if item.generation_size is not None}
        return max(0, max(sizes) - len(built)) if sizes else 0

    @property
    def owned_objects(self) -> dict[str, DatabaseObject]:
        return {name: item for name, item in self.objects.items() if item.owned}

    @property
    def holds_package_objects(self) -> bool:
        return any(item.owned for item in self.objects.values())

    @property
    def extra_roles(self) -> frozenset[str]:
        """The roles the last sync granted on top of the settings, as it recorded them."""
        return frozenset().union(*(item.extra_roles for item in self.objects.values()))

    def foreign_objects(self, declared: Iterable[str] = ()) -> list[str]:
        """What the package did not create and must never drop or replace, described.

        A view without the marker whose name a class declares is taken over (it was
        made by django-orm-views 2, or by hand to be replaced); any other view, and
        every table, sequence, function or type, belongs to someone else."""
        declared = set(declared)
        found = [
            f"{item.kind} {self.schema}.{item.name}"
            for item in self.objects.values()
            if not item.owned and not (item.is_view and item.name in declared)
        ]
        return sorted(found) + list(self.other_objects)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _grantees(acl_column: str, privilege: str, owner_column: str) -> str:
    # The PUBLIC pseudo-role (grantee 0) is reported as 'public', the spelling that
    # means the keyword; a real role called "PUBLIC" keeps its own name.
    return f"""ARRAY(
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN '{PUBLIC_KEYWORD_ROLE}' ELSE pg_get_userbyid(a.grantee) END
        FROM aclexplode({acl_column}) AS a
        WHERE a.privilege_type = '{privilege}' AND a.grantee <> {owner_column}
    )"""


CATALOG_QUERY = f"""
WITH target AS (
    SELECT oid, nspname, nspacl, nspowner, obj_description(oid, 'pg_namespace') AS comment
    FROM pg_namespace
    WHERE nspname = %s OR nspname = %s OR nspname LIKE %s OR nspname LIKE %s
)
SELECT
    n.nspname,
    n.comment,
    {_grantees("n.nspacl", "USAGE", "n.nspowner")},
    c.relname,
    c.relkind::text,
    obj_description(r.oid, 'pg_rewrite'),
    obj_description(c.oid, 'pg_class'),
    c.relispopulated,
    {_grantees("c.relacl", "SELECT", "c.relowner")},
    (
        SELECT json_agg(json_build_array(a.attname, d.description) ORDER BY a.attname)
        FROM pg_description AS d
        JOIN pg_attribute AS a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
        WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid > 0
    ),
    c.reloptions,
    n.nspname <> %s AND EXISTS (
        SELECT 1
        FROM pg_depend AS dep
        JOIN pg_rewrite AS reader ON reader.oid = dep.objid
        WHERE dep.classid = 'pg_rewrite'::regclass AND dep.refclassid = 'pg_class'::regclass
            AND dep.refobjid = c.oid AND reader.ev_class <> c.oid
    )
FROM target AS n
LEFT JOIN pg_class AS c
    ON c.relnamespace = n.oid
    AND (n.nspname = %s OR n.nspname LIKE %s OR (%s AND n.nspname LIKE %s))
    AND c.relkind IN ('v', 'm', 'r', 'p', 'f', 'S')
LEFT JOIN pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
UNION ALL
SELECT n.nspname, n.comment, NULL, pg_describe_object(d.classid, d.objid, 0), 'o',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM target AS n
JOIN pg_depend AS d
    ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid AND d.deptype = 'n'
WHERE (n.nspname = %s OR n.nspname LIKE %s) AND d.classid <> 'pg_class'::regclass
"""


@dataclass(frozen=True)
class _CatalogRow:
    schema: str
    schema_comment: str | None
    schema_grantees: list[str] | None
    name: str | None
    relkind: str | None
    rule_comment: str | None
    comment: str | None
    populated: bool | None
    grantees: list[str] | None
    column_comments: list[list[str]] | str | None
    options: list[str] | None
    referenced: bool | None

    def _column_comments(self) -> list[list[str]]:
        # json is decoded by the driver, unless a backend registered it as text.
        value = self.column_comments
        return json.loads(value) if isinstance(value, str) else value or []

    def as_object(self) -> DatabaseObject:
        assert self.name is not None and self.relkind is not None
        view = self.relkind in ("v", "m")
        marker = parse_owner_marker(self.rule_comment, self.comment) if view else None
        legacy = marker is not None and self.rule_comment is None
        return DatabaseObject(
            name=self.name,
            kind=RELATION_KINDS.get(self.relkind, self.relkind),
            fingerprint=marker.fingerprint if marker else None,
            grantees=frozenset(self.grantees or ()),
            populated=bool(self.populated),
            owned=marker is not None,
            extra_roles=marker.extra_roles if marker else frozenset(),
            # An older version kept its fingerprint there: not a comment of the user's.
            comment=None if legacy else self.comment,
            column_comments=tuple((column, text) for column, text in self._column_comments()),
            options=tuple(sorted(self.options or ())),
            storage=marker.storage if marker else None,
            generation=marker.generation if marker else None,
            generation_size=marker.size if marker else None,
        )


def read_catalog(
    connection: BaseDatabaseWrapper,
    schema: str,
    *,
    generation: str | None = None,
    with_previous: bool = False,
) -> CatalogSnapshot:
    """The views schema's relations (kind, owner marker, SELECT grantees, comments,
    options), everything else it holds, the working schemas the package created (an
    interrupted sync's leftovers, the previous generation, the storage schemas) and the
    stored relations. One round trip.

    ``generation`` reads another generation of ``schema`` (the previous one, for a
    rollback) as if it were the live one; ``with_previous`` also reads every previous
    generation, into ``snapshot.generations``, in the same round trip.
    """
    live_name = generation or schema
    with connection.cursor() as cursor:
        cursor.execute(CATALOG_QUERY, catalog_parameters(schema, live_name, with_previous))
        rows = [_CatalogRow(*row) for row in cursor.fetchall()]
    snapshot = _snapshot(rows, schema, live_name)
    if with_previous:
        generations = {
            item.name: _snapshot(rows, schema, item.name)
            for item in snapshot.previous_generations()
        }
        snapshot = replace(snapshot, generations=generations)
    return snapshot


def catalog_parameters(
    schema: str, live_name: str | None = None, with_previous: bool = False
) -> list[str | bool]:
    """The parameters of CATALOG_QUERY for ``schema`` (its generation ``live_name``)."""
    live_name = live_name or schema
    old_pattern = _like_escape(old_schema_prefix(schema)) + "%"
    data_pattern = _like_escape(storage_schema_prefix(schema)) + "%"
    return [
        *(schema, staging_schema_name(schema), old_pattern, data_pattern, live_name),
        *(live_name, data_pattern, with_previous, old_pattern, live_name, data_pattern),
    ]


def _snapshot(rows: list[_CatalogRow], schema: str, live_name: str) -> CatalogSnapshot:
    """The snapshot of the generation ``live_name`` of ``schema``, from the rows read."""
    staging = staging_schema_name(schema)
    live = [row for row in rows if row.schema == live_name]
    marked = {
        row.schema: parse_working_schema(row.schema, row.schema_comment or "")
        for row in rows
        if row.schema not in (schema, live_name)
        and (row.schema_comment or "").startswith(SCHEMA_MARKER_PREFIX)
    }
    stored_kinds: dict[tuple[str, str], _CatalogRow] = {
        (row.schema, row.name): row
        for row in rows
        if row.name
        and row.relkind != "o"
        and marked.get(row.schema, WorkingSchema("", "")).role == "storage"
    }
    return CatalogSnapshot(
        schema=schema,
        schema_exists=bool(live),
        schema_grantees=frozenset(
            next((row.schema_grantees for row in live if row.schema_grantees is not None), ())
        ),
        objects={
            row.name: _with_storage(row.as_object(), stored_kinds)
            for row in live
            if row.name and row.relkind != "o"
        },
        working=tuple(sorted(marked.values(), key=lambda item: item.name)),
        other_objects=tuple(sorted(row.name for row in live if row.name and row.relkind == "o")),
        foreign_staging=any(
            row.schema == staging
            and not (row.schema_comment or "").startswith(SCHEMA_MARKER_PREFIX)
            for row in rows
        ),
        schema_comment=live[0].schema_comment if live else None,
        stored={
            key: StoredObject(
                key[0],
                key[1],
                RELATION_KINDS.get(row.relkind or "v", "relation"),
                bool(row.populated),
                bool(row.referenced),
                row.relkind in ("v", "m")
                and parse_owner_marker(row.rule_comment, None) is not None,
            )
            for key, row in stored_kinds.items()
        },
        occupied_storage=frozenset(
            row.schema
            for row in rows
            if row.name and marked.get(row.schema, WorkingSchema("", "")).role == "storage"
        ),
    )


def _with_storage(
    item: DatabaseObject, stored: dict[tuple[str, str], _CatalogRow]
) -> DatabaseObject:
    """A view that points to a stored object takes that object's kind and state: to
    its readers and to a plan, it is the materialized view it points to."""
    if item.storage is None:
        return item
    row = stored.get((item.storage, item.name))
    if row is None:
        # Its storage is gone (dropped by hand): rebuilt by the next sync.
        return replace(item, stored_missing=True)
    return replace(item, kind=RELATION_KINDS[row.relkind or "v"], populated=bool(row.populated))


def package_schemas(snapshot: CatalogSnapshot) -> list[str]:
    """The schemas whose objects are the package's own: the views schema and the
    working schemas it marked."""
    return [snapshot.schema, *snapshot.leftover_schemas]
