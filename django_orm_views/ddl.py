"""DDL: the statements that apply a plan, grouped in phases (transactions or savepoints).

Pure: a plan (and the outside objects that depend on its views, read by the caller)
in, statements out. It refuses a plan that would drop or replace anything the package
did not create, or that an outside object depends on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .compiler import splice_schemas
from .exceptions import ExternalDependentsError, ForeignObjectsError
from .introspection import (
    STAGING_MARKER,
    STORAGE_MARKER,
    CatalogSnapshot,
    ExternalDependent,
    WorkingSchema,
    old_schema_prefix,
    owner_marker,
    previous_marker,
    staging_schema_name,
    storage_schema_prefix,
)
from .plan import ActionKind, SyncPlan, ViewAction, schema_roles, view_grants
from .sql import object_keyword, qualified_name, quote_identifier, quote_literal, quote_role

__all__ = [
    "CompiledPlan",
    "Phase",
    "PreviousGeneration",
    "Step",
    "compile_plan",
    "describe_dependent",
    "drop_schema_sql",
]


@dataclass(frozen=True)
class Step:
    sql: str
    view: str | None = None


@dataclass
class Phase:
    """Statements run in one transaction (a savepoint inside an outer transaction)."""

    name: str
    steps: list[Step]
    # Retried when it times out on a lock or is chosen as a deadlock victim.
    retry_on_lock: bool = False
    # Waits at most ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS for each lock, so that readers queued
    # behind it are never held up longer than that.
    lock_timeout: bool = False
    # Sent as one string: one round trip, and the shortest possible transaction.
    single_batch: bool = False
    # Bounds how long the phase may hold its locks, stopped or not, with local
    # statement and idle-in-transaction timeouts (ORM_VIEWS_SWAP_TIMEOUT_MS).
    bounded: bool = False
    # Bounds only how long a stopped sync may sit on the phase's locks (its statements
    # may take as long as they need: a recreate rebuilds everything).
    idle_bounded: bool = False
    # The schema whose readable views are compared with their models afterwards.
    verify_in: str | None = None

    def batches(self, views_per_batch: int = 1) -> list[Step]:
        """The steps joined into few round trips: all of them (``single_batch``), or the
        statements of ``views_per_batch`` views at a time. With one view a batch, an
        error and a duration belong to that view."""
        if self.single_batch and self.steps:
            return [Step(";\n".join(step.sql for step in self.steps))]
        batches: list[Step] = []
        views_in_last = 0
        last_view: str | None = None
        for step in self.steps:
            same_view = bool(batches) and step.view == last_view
            if batches and (same_view or (views_per_batch > 1 and views_in_last < views_per_batch)):
                view = batches[-1].view if same_view else None
                batches[-1] = Step(f"{batches[-1].sql};\n{step.sql}", view)
                views_in_last += 0 if same_view else 1
            else:
                batches.append(step)
                views_in_last = 1
            last_view = step.view
        return batches


@dataclass
class CompiledPlan:
    phases: list[Phase]
    # The schema the swap renames the live one to: the previous generation, kept.
    replaced_schema: str | None = None
    # The id of the generation the plan builds (None: views updated in place).
    generation: str | None = None

    @property
    def statements(self) -> list[str]:
        """Every statement, in order."""
        return [step.sql for phase in self.phases for step in phase.steps]


def drop_schema_sql(schema: str) -> str:
    return f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE"


def _grant_steps(schema: str, name: str, add: Iterable[str], revoke: Iterable[str]) -> list[Step]:
    # GRANT ... ON TABLE covers views and materialized views alike.
    target = f"TABLE {qualified_name(schema, name)}"
    steps = []
    revoke = sorted(revoke)
    add = sorted(add)
    if revoke:
        roles = ", ".join(quote_role(role) for role in revoke)
        steps.append(Step(f"REVOKE SELECT ON {target} FROM {roles}", name))
    if add:
        roles = ", ".join(quote_role(role) for role in add)
        steps.append(Step(f"GRANT SELECT ON {target} TO {roles}", name))
    return steps


def _schema_grant_steps(schema: str, add: Iterable[str], revoke: Iterable[str]) -> list[Step]:
    steps = []
    if revoke := sorted(revoke):
        roles = ", ".join(quote_role(role) for role in revoke)
        steps.append(Step(f"REVOKE USAGE ON SCHEMA {quote_identifier(schema)} FROM {roles}"))
    if add := sorted(add):
        roles = ", ".join(quote_role(role) for role in add)
        steps.append(Step(f"GRANT USAGE ON SCHEMA {quote_identifier(schema)} TO {roles}"))
    return steps


def stored_views(plan: SyncPlan) -> set[str]:
    """The views kept in a storage schema, which each generation only points to:
    every materialized view, every view one reads (directly or not), and any unchanged
    view that is stored already.

    A swap then never moves them (a move needs an ACCESS EXCLUSIVE lock, which a query
    on a hot standby conflicts with), and dropping a generation never drops what a
    stored object reads.
    """
    stored: set[str] = set()
    pending = [name for name in plan.order if plan.rendered[name].materialized]
    while pending:
        name = pending.pop()
        if name not in stored:
            stored.add(name)
            pending.extend(dep for dep in plan.rendered[name].dependencies if dep in plan.rendered)
    for action in plan.actions_of(ActionKind.KEEP):
        existing = plan.snapshot.objects.get(action.name)
        if existing is not None and existing.storage is not None:
            stored.add(action.name)
    return stored


def _storage_locations(plan: SyncPlan, storage: str, *, reuse: bool) -> dict[str, str]:
    """Where each stored view lives after the sync: the storage schema it is in already
    (unchanged, ``reuse``), else the new one, ``storage``."""
    kept = {action.name for action in plan.actions_of(ActionKind.KEEP)} if reuse else set()
    locations = {}
    for name in stored_views(plan):
        existing = plan.snapshot.objects.get(name)
        if name in kept and existing is not None and existing.storage is not None:
            locations[name] = existing.storage
        else:
            locations[name] = storage
    return locations


def new_storage_schema(schema: str) -> str:
    return f"{storage_schema_prefix(schema)}{uuid.uuid4().hex[:8]}"


def new_generation() -> str:
    """A generation's id: 8 hex digits, which its schema takes once it is replaced."""
    return uuid.uuid4().hex[:8]


def _create_steps(
    plan: SyncPlan,
    names: Iterable[str],
    target_schema: str,
    generation: str,
    locations: Mapping[str, str] | None = None,
    storage: str | None = None,
) -> list[Step]:
    """CREATE, COMMENT and GRANT of ``names`` (in dependency order) in ``target_schema``;
    references between them are rewritten to ``target_schema``. A stored view
    (``locations``) is built in ``storage`` when that is its location, and
    ``target_schema`` gets a view that points to it."""
    chosen = frozenset(names)
    locations = locations or {}
    steps = []
    if storage is not None and storage in locations.values():
        steps += [
            Step(f"CREATE SCHEMA {quote_identifier(storage)}"),
            Step(
                f"COMMENT ON SCHEMA {quote_identifier(storage)} IS {quote_literal(STORAGE_MARKER)}"
            ),
        ]
    for name in (name for name in plan.order if name in chosen):
        item = plan.rendered[name]
        if name in locations:
            if locations[name] == storage:
                steps += _stored_steps(plan, name, storage, locations, generation)
            steps += _pointer_steps(
                plan, name, target_schema, locations[name], generation, len(chosen)
            )
        else:
            targets = {other: target_schema for other in chosen}
            select_sql = None
            if target_schema != plan.schema:
                select_sql = splice_schemas(item.select_sql, item.schema_references, targets)
            for sql in item.create_statements(target_schema, select_sql):
                steps.append(Step(sql, name))
            steps.extend(_populate_steps(plan, name, target_schema))
            steps.append(
                _marker_step(plan, name, target_schema, generation=generation, size=len(chosen))
            )
        steps.extend(
            _comment_steps(plan, name, target_schema, created=True, pointer=name in locations)
        )
        steps.extend(_grant_steps(target_schema, name, view_grants(item, plan.roles), ()))
    return steps


def _stored_steps(
    plan: SyncPlan, name: str, storage: str, locations: Mapping[str, str], generation: str
) -> list[Step]:
    """Build a stored view in ``storage``: it reads the other stored views where they
    are stored, by name, never through a generation (which a later sync drops)."""
    item = plan.rendered[name]
    targets = {other: locations[other] for other in item.dependencies if other in locations}
    select_sql = splice_schemas(item.select_sql, item.schema_references, targets)
    steps = [Step(sql, name) for sql in item.create_statements(storage, select_sql)]
    steps += _populate_steps(plan, name, storage)
    steps.append(_marker_step(plan, name, storage, generation=generation))
    if any(option.startswith("security_invoker") for option in item.options):
        # Read with the reader's rights: the reader needs them on the stored view too.
        steps += _grant_steps(storage, name, view_grants(item, plan.roles), ())
    return steps


def _pointer_steps(
    plan: SyncPlan, name: str, target_schema: str, storage: str, generation: str, size: int
) -> list[Step]:
    """The view a generation holds for a stored one: ``SELECT *`` from it, with the
    declared options, and a marker naming where it is stored."""
    item = plan.rendered[name]
    options = f" WITH ({', '.join(item.options)})" if item.options else ""
    return [
        Step(
            f"CREATE VIEW {qualified_name(target_schema, name)}{options} AS "
            f"SELECT * FROM {qualified_name(storage, name)}",
            name,
        ),
        _marker_step(plan, name, target_schema, storage=storage, generation=generation, size=size),
    ]


def _comment_steps(
    plan: SyncPlan, name: str, target_schema: str, *, created: bool, pointer: bool = False
) -> list[Step]:
    """The declared comments of the view and of its columns, exactly as declared; for a
    view kept as it is (``created`` False), the ones it has are replaced or removed.
    ``pointer``: the view created points to a stored one."""
    item = plan.rendered[name]
    target = qualified_name(target_schema, name)
    existing = plan.snapshot.objects.get(name)
    if created:
        keyword = object_keyword("view" if pointer else item.kind)
    else:
        keyword = object_keyword(existing.relation_kind if existing else item.kind)
    steps = []
    if item.comment is not None or not created:
        text = "NULL" if item.comment is None else quote_literal(item.comment)
        steps.append(Step(f"COMMENT ON {keyword} {target} IS {text}", name))
    stale = (
        {column for column, _ in existing.column_comments} if existing and not created else set()
    )
    declared = dict(item.column_comments)
    for column in sorted(stale - set(declared)):
        steps.append(Step(f"COMMENT ON COLUMN {target}.{quote_identifier(column)} IS NULL", name))
    for column, text in item.column_comments:
        steps.append(
            Step(
                f"COMMENT ON COLUMN {target}.{quote_identifier(column)} IS {quote_literal(text)}",
                name,
            )
        )
    return steps


def _marker_step(
    plan: SyncPlan,
    name: str,
    target_schema: str,
    *,
    storage: str | None = None,
    generation: str | None = None,
    size: int | None = None,
) -> Step:
    """The package's ownership marker and fingerprint, on the view's ``_RETURN`` rule
    (the view's own comment belongs to the user), with the generation that built it;
    for a view that points to a stored one, where that is stored. A view updated in
    place keeps its storage and generation."""
    existing = plan.snapshot.objects.get(name)
    if existing is not None and generation is None:
        storage, generation = existing.storage, existing.generation
        size = existing.generation_size
    extra_roles = () if plan.rendered[name].hidden else plan.extra_roles
    marker = quote_literal(
        owner_marker(plan.fingerprints[name], extra_roles, storage, generation, size)
    )
    return Step(
        f'COMMENT ON RULE "_RETURN" ON {qualified_name(target_schema, name)} IS {marker}', name
    )


def _populate_steps(plan: SyncPlan, name: str, target_schema: str) -> list[Step]:
    """What a rebuild (a refresh that must not block readers) does to a materialized view
    it has just created in the staging schema, before the swap.

    It fills a ``with_data = False`` view that it was asked to refresh, and any such view
    it rebuilds as a dependent that was populated: created empty, it would swap in
    unreadable. And it analyzes every populated one: a new relation has no statistics,
    and the readers' query plans would be guesses until autovacuum got to it.
    """
    item = plan.rendered[name]
    if not plan.rebuild or not item.materialized:
        return []
    target = qualified_name(target_schema, name)
    populated = item.with_data
    steps = []
    if not item.with_data:
        existing = plan.snapshot.objects.get(name)
        if name in plan.rebuild or (existing is not None and existing.populated):
            steps.append(Step(f"REFRESH MATERIALIZED VIEW {target}", name))
            populated = True
    if populated:
        steps.append(Step(f"ANALYZE {target}", name))
    return steps


def _drop_dependents_first(plan: SyncPlan) -> list[Step]:
    """DROP statements for the live views, every view before the views it reads.

    Readers lock a view before the relations under it; ``DROP SCHEMA ... CASCADE`` alone
    would lock them the other way round and deadlock with such a reader.
    """
    position = {name: index for index, name in enumerate(plan.order)}
    existing = [
        item
        for item in plan.snapshot.objects.values()
        if item.kind in ("view", "materialized view")
    ]
    existing.sort(key=lambda item: (-position.get(item.name, len(position)), item.name))
    return [
        Step(
            f"DROP {object_keyword(item.relation_kind)} IF EXISTS "
            f"{qualified_name(plan.schema, item.name)} CASCADE"
        )
        for item in existing
    ]


def describe_dependent(schema: str, dependent: ExternalDependent) -> str:
    if dependent.dependent_kind == "row type":
        return f"{dependent.dependent} uses the row type of {schema}.{dependent.view}"
    return f"{dependent.dependent_kind} {dependent.dependent} depends on {schema}.{dependent.view}"


def _raise_for_dependents(plan: SyncPlan, dependents: list[ExternalDependent]) -> None:
    listed = "; ".join(describe_dependent(plan.schema, dependent) for dependent in dependents)
    raise ExternalDependentsError(
        f"Refusing to sync database '{plan.database}': objects outside the "
        f"{plan.schema!r} schema depend on views this sync would replace or drop ({listed}). "
        "Nothing was changed. Drop those objects (or declare them as views), then run "
        "sync_views again."
    )


def raise_for_foreign_objects(plan: SyncPlan) -> None:
    """Refuse a plan that would drop or replace what the package did not create."""
    if plan.snapshot.foreign_staging:
        raise ForeignObjectsError(
            f"Refusing to sync database '{plan.database}': schema "
            f"{staging_schema_name(plan.schema)!r} exists but was not created by "
            f"django-orm-views, which reserves that name (and {old_schema_prefix(plan.schema)}*) "
            "for its working schemas. Nothing was changed. Rename that schema, then run "
            "sync_views again."
        )
    if not plan.foreign_objects or not plan.changes_views:
        return
    listed = ", ".join(plan.foreign_objects)
    raise ForeignObjectsError(
        f"Refusing to sync database '{plan.database}': the {plan.schema!r} schema holds "
        f"objects that django-orm-views did not create ({listed}), and a sync replaces the "
        "whole schema. Nothing was changed. Move them to another schema (ALTER ... SET "
        "SCHEMA), drop them if they are not needed, or set ORM_VIEWS_SCHEMA to a schema "
        "of the package's own."
    )


def compile_plan(
    plan: SyncPlan,
    dependents: Iterable[ExternalDependent] = (),
    previous: PreviousGeneration | None = None,
) -> CompiledPlan:
    """The statements that apply ``plan``, grouped in phases. ``dependents`` are the
    objects outside the package's schemas that depend on the live views, ``previous``
    the newest previous generation and what it holds (both read by the caller).
    Refuses a plan that would drop or replace anything the package did not create, or
    anything an outside object depends on."""
    raise_for_foreign_objects(plan)
    if not plan.changes_views:
        # Only grants differ: change them in place, nothing to rebuild; the previous
        # generation loses what the live one loses (and records it, for a rollback).
        steps = _in_place_grant_steps(plan) + narrow_previous_steps(plan, previous, record=True)
        return CompiledPlan([Phase("grants", steps)])
    if plan.strategy == "recreate":
        compiled = _compile_recreate(plan, list(dependents))
    else:
        compiled = _compile_swap(plan, list(dependents))
    # Dropped soon after (at most one previous generation is kept), or left alone by a
    # recreate: either way it grants nothing the new generation does not.
    compiled.phases[0].steps += narrow_previous_steps(plan, previous, record=False)
    return compiled


@dataclass(frozen=True)
class PreviousGeneration:
    """The newest previous generation: its marker, and what it holds."""

    schema: WorkingSchema
    held: CatalogSnapshot


def narrow_previous_steps(
    plan: SyncPlan, previous: PreviousGeneration | None, *, record: bool
) -> list[Step]:
    """Revoke from the previous generation what the plan's generation will not grant, so
    that nobody keeps through it an access the code has taken away; with ``record``,
    add it to the grants its marker says were revoked (a rollback gives them back)."""
    if previous is None:
        return []
    grants_after = {name: view_grants(item, plan.roles) for name, item in plan.rendered.items()}
    revoked = narrowed_grants(
        previous.held, schema_roles(plan.rendered.values(), plan.roles), grants_after
    )
    if not revoked:
        return []
    steps = revoke_steps(previous.schema.name, revoked)
    if record:
        merged = {name: set(roles) for name, roles in previous.schema.revoked}
        for name, roles in revoked.items():
            merged.setdefault(name, set()).update(roles)
        marker = previous_marker(
            previous.schema.replaced_at or time.time(),
            previous.schema.views,
            previous.schema.lost,
            merged,
        )
        steps.append(
            Step(
                f"COMMENT ON SCHEMA {quote_identifier(previous.schema.name)} "
                f"IS {quote_literal(marker)}"
            )
        )
    return steps


def _compile_recreate(plan: SyncPlan, dependents: list[ExternalDependent]) -> CompiledPlan:
    if dependents:
        _raise_for_dependents(plan, dependents)
    schema = plan.schema
    steps = [
        *_drop_dependents_first(plan),
        Step(drop_schema_sql(schema)),
        Step(f"CREATE SCHEMA {quote_identifier(schema)}"),
        *_schema_comment_steps(schema, plan.snapshot.schema_comment),
        *_schema_grant_steps(schema, schema_roles(plan.rendered.values(), plan.roles), ()),
    ]
    # A recreate rebuilds everything: stored views too, in a new storage schema (the old
    # ones are dropped after the commit, once nothing points to them).
    storage = new_storage_schema(schema)
    locations = _storage_locations(plan, storage, reuse=False)
    generation = new_generation()
    steps += _create_steps(plan, plan.order, schema, generation, locations, storage)
    return CompiledPlan(
        [Phase("recreate", steps, retry_on_lock=True, idle_bounded=True, verify_in=schema)],
        generation=generation,
    )


def _moved_views(plan: SyncPlan, dependents: list[ExternalDependent]) -> set[str]:
    """The unchanged views a swap moves across instead of rebuilding: views an outside
    object depends on, and what they read. (Materialized views stay where they are
    stored; the new generation points to them.)"""
    kept = {action.name for action in plan.actions_of(ActionKind.KEEP)}
    depended_on = {dependent.view for dependent in dependents}
    moved: set[str] = set()
    pending = [name for name in kept if name in depended_on]
    while pending:
        name = pending.pop()
        if name not in moved:
            moved.add(name)
            pending.extend(plan.rendered[name].dependencies)
    return moved


def _compile_swap(plan: SyncPlan, dependents: list[ExternalDependent]) -> CompiledPlan:
    schema = plan.schema
    moved = _moved_views(plan, dependents)
    blocking = [dependent for dependent in dependents if dependent.view not in moved]
    if blocking:
        _raise_for_dependents(plan, blocking)
    staging = staging_schema_name(schema)
    storage = new_storage_schema(schema)
    generation = new_generation()
    locations = _storage_locations(plan, storage, reuse=not plan.force)
    built = [name for name in plan.order if name not in moved]
    build = [
        Step(f"CREATE SCHEMA {quote_identifier(staging)}"),
        Step(f"COMMENT ON SCHEMA {quote_identifier(staging)} IS {quote_literal(STAGING_MARKER)}"),
        *_schema_grant_steps(staging, schema_roles(plan.rendered.values(), plan.roles), ()),
        *_create_steps(
            plan,
            built,
            staging,
            generation,
            {name: locations[name] for name in built if name in locations},
            storage,
        ),
    ]
    swap = [
        step
        for action in plan.actions
        if action.name in moved
        for step in _move_steps(plan, action)
    ]
    old_schema = None
    if plan.snapshot.schema_exists:
        old_schema = previous_schema_name(schema, plan.snapshot)
        grants_after = {name: view_grants(item, plan.roles) for name, item in plan.rendered.items()}
        revoked = narrowed_grants(
            plan.snapshot, schema_roles(plan.rendered.values(), plan.roles), grants_after
        )
        # Moved views have left it already (with their grants brought up to date).
        revoked = {name: roles for name, roles in revoked.items() if name not in moved}
        swap += retire_generation_steps(schema, old_schema, plan.snapshot, revoked)
    swap += [
        Step(f"ALTER SCHEMA {quote_identifier(staging)} RENAME TO {quote_identifier(schema)}"),
        # The live schema keeps the comment its users gave it (none: no comment).
        *_schema_comment_steps(schema, plan.snapshot.schema_comment, always=True),
    ]
    return CompiledPlan(
        [
            Phase("build", build, verify_in=staging),
            Phase(
                "swap",
                swap,
                retry_on_lock=True,
                lock_timeout=True,
                single_batch=True,
                bounded=True,
            ),
        ],
        replaced_schema=old_schema,
        generation=generation,
    )


def previous_schema_name(schema: str, snapshot: CatalogSnapshot) -> str:
    """The name the live generation takes when it is replaced: named after its id, so
    that ``list_views`` and a rollback speak of the same generation (a new id when it
    has none, or when a schema of that name is still there)."""
    live = snapshot.generation
    taken = set(snapshot.leftover_schemas)
    if live is None or f"{old_schema_prefix(schema)}{live}" in taken:
        live = new_generation()
    return f"{old_schema_prefix(schema)}{live}"


def retire_generation_steps(
    schema: str,
    old_schema: str,
    snapshot: CatalogSnapshot,
    revoked: Mapping[str, frozenset[str]],
) -> list[Step]:
    """Rename the live generation to ``old_schema`` and mark it as the previous one, with
    the time (for ORM_VIEWS_KEEP_PREVIOUS_SECONDS), the views it holds, how many it had
    lost, and the grants ``revoked`` from it (for a rollback). Renaming a schema locks
    none of its relations: readers, on the primary or on a hot standby, never wait for
    it.

    ``revoked`` (by view name; ``""``: USAGE on the schema) is what it grants that the
    generation replacing it does not: revoked now, so that nobody keeps, through the
    previous generation, an access the code has taken away. Queries already running are
    not affected (PostgreSQL checks privileges when a query starts)."""
    marker = previous_marker(time.time(), snapshot.owned_objects, snapshot.lost_views, revoked)
    return [
        Step(f"ALTER SCHEMA {quote_identifier(schema)} RENAME TO {quote_identifier(old_schema)}"),
        Step(f"COMMENT ON SCHEMA {quote_identifier(old_schema)} IS {quote_literal(marker)}"),
        *revoke_steps(old_schema, revoked),
    ]


def revoke_steps(schema: str, revoked: Mapping[str, Iterable[str]]) -> list[Step]:
    """REVOKE ``revoked`` (by view name; ``""``: USAGE on the schema) in ``schema``."""
    steps = _schema_grant_steps(schema, (), revoked.get("", ()))
    for name, roles in sorted(revoked.items()):
        if name:
            steps += _grant_steps(schema, name, (), roles)
    return steps


def regrant_steps(schema: str, revoked: Iterable[tuple[str, Iterable[str]]]) -> list[Step]:
    """Give back the grants revoked from a generation when it was replaced (a rollback
    swaps it back in with the grants it had)."""
    steps = []
    for name, roles in revoked:
        if name:
            steps += _grant_steps(schema, name, roles, ())
        else:
            steps += _schema_grant_steps(schema, roles, ())
    return steps


def narrowed_grants(
    held: CatalogSnapshot,
    schema_roles_after: frozenset[str],
    grants_after: Mapping[str, frozenset[str]],
) -> dict[str, frozenset[str]]:
    """What the generation ``held`` describes grants that the one replacing it will not
    (``grants_after``, by view name; views it lacks grant nothing), by view name; ``""``
    holds the roles that lose USAGE on the schema."""
    revoked = {}
    if lost := held.schema_grantees - schema_roles_after:
        revoked[""] = lost
    for name, item in held.owned_objects.items():
        if lost := item.grantees - grants_after.get(name, frozenset()):
            revoked[name] = lost
    return revoked


def _relation_kind(plan: SyncPlan, action: ViewAction) -> str:
    existing = plan.snapshot.objects.get(action.name)
    return existing.relation_kind if existing is not None else action.object_kind


def _move_steps(plan: SyncPlan, action: ViewAction) -> list[Step]:
    """Move an unchanged view from the live schema to the staging one, with its grants
    (and its marker) brought up to date."""
    staging = staging_schema_name(plan.schema)
    steps = [
        Step(
            f"ALTER {object_keyword(_relation_kind(plan, action))} "
            f"{qualified_name(plan.schema, action.name)} "
            f"SET SCHEMA {quote_identifier(staging)}",
            action.name,
        ),
        *_grant_steps(staging, action.name, action.grants_to_add, action.grants_to_revoke),
    ]
    if action.marker_outdated:
        steps.append(_marker_step(plan, action.name, staging))
    if action.comments_outdated:
        steps += _comment_steps(plan, action.name, staging, created=False)
    return steps


def _in_place_grant_steps(plan: SyncPlan) -> list[Step]:
    schema = plan.schema
    steps = _schema_grant_steps(schema, plan.schema_grants_to_add, plan.schema_grants_to_revoke)
    for action in plan.actions:
        steps += _grant_steps(schema, action.name, action.grants_to_add, action.grants_to_revoke)
        if action.marker_outdated:
            steps.append(_marker_step(plan, action.name, schema))
        if action.comments_outdated:
            steps += _comment_steps(plan, action.name, schema, created=False)
    return steps


def _schema_comment_steps(schema: str, comment: str | None, *, always: bool = False) -> list[Step]:
    if comment is None and not always:
        return []
    text = "NULL" if comment is None else quote_literal(comment)
    return [Step(f"COMMENT ON SCHEMA {quote_identifier(schema)} IS {text}")]
