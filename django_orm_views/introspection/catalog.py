"""The views schema as the database holds it: the package's markers, its objects and
everything else in it, read in one round trip; columns, roles and statistics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..conf import PUBLIC_KEYWORD_ROLE
from ..sql import qualified_name, quote_literal

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

# What the package writes to recognise its own objects. Both live where users and BI
# tools do not look: on a view's ``_RETURN`` rule (never on the view, whose comment
# belongs to the user) and on the working schemas a sync creates and later drops.
OWNER_MARKER_PREFIX = "django_orm_views "
SCHEMA_MARKER_PREFIX = "django_orm_views:"
STAGING_MARKER = f"{SCHEMA_MARKER_PREFIX}staging"
PREVIOUS_MARKER = f"{SCHEMA_MARKER_PREFIX}previous"
STORAGE_MARKER = f"{SCHEMA_MARKER_PREFIX}storage"
# How versions before 3.0 marked their views (in the view's own comment).
LEGACY_FINGERPRINT_PREFIX = "django-orm-views:"


def staging_schema_name(schema: str) -> str:
    return f"{schema}__staging"


def old_schema_prefix(schema: str) -> str:
    """Where the previous generation of the views schema lives after a swap."""
    return f"{schema}__old_"


def storage_schema_prefix(schema: str) -> str:
    """Where materialized views (and the views they read) are stored: a schema per sync
    that built some, which the generations' views point to and which no swap moves."""
    return f"{schema}__data_"


def owner_marker(
    fingerprint: str,
    extra_roles: Iterable[str] = (),
    storage: str | None = None,
    generation: str | None = None,
    size: int | None = None,
) -> str:
    """The comment of a view's ``_RETURN`` rule: the package's ownership marker, the
    view's fingerprint, the roles granted by ``--grant-select-permissions-to-user``,
    the generation (the sync that built it) and, for a view that only points to a
    stored one, the schema that stores it."""
    payload: dict[str, object] = {
        "fingerprint": fingerprint,
        "extra_roles": sorted(set(extra_roles)),
    }
    if storage is not None:
        payload["storage"] = storage
    if generation is not None:
        payload["generation"] = generation
    if size is not None:
        # How many views the generation was built with: one that lost some (to a
        # migration's CASCADE, say) is never rolled back to.
        payload["size"] = size
    return OWNER_MARKER_PREFIX + json.dumps(payload, sort_keys=True)


def previous_marker(
    replaced_at: float,
    views: Iterable[str],
    lost: int = 0,
    revoked: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """The comment of a previous generation: when the swap replaced it, the views it
    held then, how many of the views it was built with it had lost by then (a rollback
    refuses a generation that has lost some), and the grants revoked from it at the swap
    (by view name; ``""``: USAGE on the schema), which a rollback gives back."""
    payload: dict[str, object] = {"replaced_at": round(replaced_at, 3), "views": sorted(views)}
    if lost:
        payload["lost"] = lost
    if revoked:
        payload["revoked"] = {name: sorted(roles) for name, roles in sorted(revoked.items())}
    return f"{PREVIOUS_MARKER} {json.dumps(payload, sort_keys=True)}"


@dataclass(frozen=True)
class OwnerMarker:
    fingerprint: str | None
    extra_roles: frozenset[str] = frozenset()
    storage: str | None = None
    generation: str | None = None
    size: int | None = None


def parse_owner_marker(rule_comment: str | None, legacy_comment: str | None) -> OwnerMarker | None:
    """The marker of a relation the package created, or None for anyone else's."""
    if rule_comment and rule_comment.startswith(OWNER_MARKER_PREFIX):
        try:
            payload = json.loads(rule_comment[len(OWNER_MARKER_PREFIX) :])
            storage, generation = payload.get("storage"), payload.get("generation")
            size = payload.get("size")
            return OwnerMarker(
                str(payload["fingerprint"]),
                frozenset(str(role) for role in payload.get("extra_roles", ())),
                None if storage is None else str(storage),
                None if generation is None else str(generation),
                None if size is None else int(size),
            )
        except (ValueError, KeyError, TypeError):
            return OwnerMarker(None)
    if legacy_comment and legacy_comment.startswith(LEGACY_FINGERPRINT_PREFIX):
        # Created by an older version: ours, rebuilt once to move its marker.
        return OwnerMarker(None)
    return None


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
class WorkingSchema:
    """A schema the package created beside the views schema, recognised by its marker:
    ``staging`` (left by an interrupted sync), ``previous`` (the generation the last
    swap replaced, kept for readers and for a rollback), ``storage`` (stored objects)
    or ``other`` (a marker this version does not know: dropped like a leftover)."""

    name: str
    role: str
    replaced_at: float | None = None
    views: tuple[str, ...] = ()
    # Views it was built with that were gone when it was replaced.
    lost: int = 0
    # The grants revoked from it when it was replaced, by view ("": the schema's USAGE).
    revoked: tuple[tuple[str, tuple[str, ...]], ...] = ()


def parse_working_schema(name: str, comment: str) -> WorkingSchema:
    markers = {"staging": STAGING_MARKER, "previous": PREVIOUS_MARKER, "storage": STORAGE_MARKER}
    role = next(
        (
            role
            for role, marker in markers.items()
            if comment == marker or comment.startswith(marker + " ")
        ),
        None,
    )
    if role is None:
        return WorkingSchema(name, "other")
    if role != "previous":
        return WorkingSchema(name, role)
    try:
        payload = json.loads(comment[len(PREVIOUS_MARKER) :] or "{}")
        return WorkingSchema(
            name,
            role,
            float(payload["replaced_at"]),
            tuple(str(view) for view in payload.get("views", ())),
            int(payload.get("lost", 0)),
            tuple(
                (str(view), tuple(str(role) for role in roles))
                for view, roles in dict(payload.get("revoked", {})).items()
            ),
        )
    except (ValueError, KeyError, TypeError):
        # Marked by an older version, which dropped it right after the swap: what is
        # left of it was left by an interrupted sync (no time, no rollback).
        return WorkingSchema(name, "other")


@dataclass(frozen=True)
class StoredObject:
    """A relation in a storage schema, and whether anything still reads it."""

    schema: str
    name: str
    kind: str
    populated: bool
    referenced: bool


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
        """Stored relations nothing reads any more (no generation points to them)."""
        return [item for item in self.stored.values() if not item.referenced]

    @property
    def empty_storage(self) -> list[str]:
        """Storage schemas that hold nothing any more."""
        used = {schema for schema, _ in self.stored}
        return [
            item.name for item in self.working if item.role == "storage" and item.name not in used
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
    ON c.relnamespace = n.oid AND (n.nspname = %s OR n.nspname LIKE %s)
    AND c.relkind IN ('v', 'm', 'r', 'p', 'f', 'S')
LEFT JOIN pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
UNION ALL
SELECT n.nspname, n.comment, NULL, pg_describe_object(d.classid, d.objid, 0), 'o',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM target AS n
JOIN pg_depend AS d
    ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid AND d.deptype = 'n'
WHERE n.nspname = %s AND d.classid <> 'pg_class'::regclass
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
    connection: BaseDatabaseWrapper, schema: str, *, generation: str | None = None
) -> CatalogSnapshot:
    """The views schema's relations (kind, owner marker, SELECT grantees, comments,
    options), everything else it holds, the working schemas the package created (an
    interrupted sync's leftovers, the previous generation, the storage schemas) and the
    stored relations. One round trip.

    ``generation`` reads another generation of ``schema`` (the previous one, for a
    rollback) as if it were the live one.
    """
    live_name = generation or schema
    staging = staging_schema_name(schema)
    old_pattern = _like_escape(old_schema_prefix(schema)) + "%"
    data_pattern = _like_escape(storage_schema_prefix(schema)) + "%"
    with connection.cursor() as cursor:
        cursor.execute(
            CATALOG_QUERY,
            [schema, staging, old_pattern, data_pattern, *[live_name] * 2, data_pattern, live_name],
        )
        rows = [_CatalogRow(*row) for row in cursor.fetchall()]
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
        and row.relkind in ("v", "m")
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
                RELATION_KINDS[row.relkind or "v"],
                bool(row.populated),
                bool(row.referenced),
            )
            for key, row in stored_kinds.items()
        },
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
        return replace(item, fingerprint=None)
    return replace(item, kind=RELATION_KINDS[row.relkind or "v"], populated=bool(row.populated))


def package_schemas(snapshot: CatalogSnapshot) -> list[str]:
    """The schemas whose objects are the package's own: the views schema and the
    working schemas it marked."""
    return [snapshot.schema, *snapshot.leftover_schemas]


LOCATION_QUERY = """
SELECT obj_description(r.oid, 'pg_rewrite')
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
WHERE n.nspname = %s AND c.relname = %s
"""


def live_location(
    connection: BaseDatabaseWrapper, schema: str, name: str
) -> tuple[str, str | None]:
    """Where the live view ``name`` of ``schema`` really is (the storage schema of a
    materialized view, else ``schema``), and the generation that built it."""
    with connection.cursor() as cursor:
        cursor.execute(LOCATION_QUERY, [schema, name])
        row = cursor.fetchone()
    marker = parse_owner_marker(row[0], None) if row else None
    if marker is None:
        return schema, None
    return marker.storage or schema, marker.generation


VIEW_COLUMNS_QUERY = """
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relname = ANY(%s)
GROUP BY c.relname
"""


def view_columns(
    connection: BaseDatabaseWrapper, schema: str, names: Iterable[str]
) -> dict[str, list[str]]:
    """The columns of the relations ``names`` in ``schema``, in order, by name."""
    with connection.cursor() as cursor:
        cursor.execute(VIEW_COLUMNS_QUERY, [schema, sorted(names)])
        return {name: list(columns) for name, columns in cursor.fetchall()}


def missing_roles(connection: BaseDatabaseWrapper, roles: Iterable[str]) -> list[str]:
    """The roles that do not exist. ``public`` is PostgreSQL's PUBLIC keyword, no role:
    pg_roles never lists it."""
    roles = sorted(set(roles) - {PUBLIC_KEYWORD_ROLE})
    if not roles:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles])
        existing = {row[0] for row in cursor.fetchall()}
    return [role for role in roles if role not in existing]


@dataclass(frozen=True)
class MaterializedViewStatistics:
    """Size on disk (with its indexes) and exact row count of a materialized view."""

    name: str
    populated: bool
    size_bytes: int
    rows: int | None


MATERIALIZED_VIEW_STATISTICS_QUERY = """
SELECT c.relname, c.relispopulated, pg_total_relation_size(c.oid)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS wanted (nspname, relname)
    ON wanted.nspname = n.nspname AND wanted.relname = c.relname
WHERE c.relkind = 'm'
ORDER BY c.relname
"""


def materialized_view_statistics(
    connection: BaseDatabaseWrapper, snapshot: CatalogSnapshot
) -> dict[str, MaterializedViewStatistics]:
    """Size and rows of each materialized view of the views schema (where it is
    stored), by name. Counting reads every populated view once, through the live
    schema (no lock that a reader would wait for); an unpopulated view cannot be read,
    so it is never counted. Two round trips."""
    locations = [
        (item.storage or snapshot.schema, name)
        for name, item in snapshot.objects.items()
        if item.materialized
    ]
    if not locations:
        return {}
    schema = snapshot.schema
    with connection.cursor() as cursor:
        cursor.execute(
            MATERIALIZED_VIEW_STATISTICS_QUERY,
            [[location for location, _ in locations], [name for _, name in locations]],
        )
        rows = cursor.fetchall()
        populated_names = [name for name, populated, _ in rows if populated]
        counts: dict[str, int] = {}
        if populated_names:
            # One query for all counts; names are quoted identifiers, never parameters.
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {quote_literal(name)}, count(*) FROM {qualified_name(schema, name)}"
                    for name in populated_names
                )
            )
            counts = {name: int(count) for name, count in cursor.fetchall()}
    return {
        name: MaterializedViewStatistics(name, bool(populated), int(size), counts.get(name))
        for name, populated, size in rows
    }
