"""DDL: the statements that apply a plan, grouped in phases (transactions or savepoints):
where each view of the new generation is built (stored apart, or in the generation),
the swap, and the previous generation it keeps.

Pure: a plan (and what the caller read around it: the outside objects that depend on
its views, the previous generation) in, statements out. It refuses a plan that would
drop or replace anything the package did not create, or that an outside object depends
on. The statements of one view or schema are in ``statements``.
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
    previous_marker,
    staging_schema_name,
    storage_schema_prefix,
)
from .plan import ActionKind, SyncPlan, ViewAction, schema_roles, view_grants
from .sql import object_keyword, qualified_name, quote_identifier, quote_literal
from .statements import (
    CompiledPlan,
    Phase,
    Step,
    comment_steps,
    drop_schema_sql,
    grant_steps,
    marker_step,
    narrowed_grants,
    populate_steps,
    regrant_steps,
    retire_generation_steps,
    revoke_steps,
    schema_comment_steps,
    schema_grant_steps,
)

__all__ = [
    "CompiledPlan",
    "Phase",
    "PreviousGeneration",
    "Step",
    "compile_plan",
    "describe_dependent",
    "drop_schema_sql",
    "regrant_steps",
]


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
            steps.extend(populate_steps(plan, name, target_schema))
            steps.append(
                marker_step(plan, name, target_schema, generation=generation, size=len(chosen))
            )
        steps.extend(
            comment_steps(plan, name, target_schema, created=True, pointer=name in locations)
        )
        steps.extend(grant_steps(target_schema, name, view_grants(item, plan.roles), ()))
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
    steps += populate_steps(plan, name, storage)
    steps.append(marker_step(plan, name, storage, generation=generation))
    if any(option.startswith("security_invoker") for option in item.options):
        # Read with the reader's rights: the reader needs them on the stored view too.
        steps += grant_steps(storage, name, view_grants(item, plan.roles), ())
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
        marker_step(plan, name, target_schema, storage=storage, generation=generation, size=size),
    ]


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


def _narrowed_by(plan: SyncPlan, held: CatalogSnapshot) -> dict[str, frozenset[str]]:
    """What the generation ``held`` describes grants that the plan's will not."""
    grants_after = {name: view_grants(item, plan.roles) for name, item in plan.rendered.items()}
    return narrowed_grants(held, schema_roles(plan.rendered.values(), plan.roles), grants_after)


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
    revoked = _narrowed_by(plan, previous.held)
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
        *schema_comment_steps(schema, plan.snapshot.schema_comment),
        *schema_grant_steps(schema, schema_roles(plan.rendered.values(), plan.roles), ()),
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
        *schema_grant_steps(staging, schema_roles(plan.rendered.values(), plan.roles), ()),
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
        revoked = _narrowed_by(plan, plan.snapshot)
        # Moved views have left it already (with their grants brought up to date).
        revoked = {name: roles for name, roles in revoked.items() if name not in moved}
        swap += retire_generation_steps(schema, old_schema, plan.snapshot, revoked)
    swap += [
        Step(f"ALTER SCHEMA {quote_identifier(staging)} RENAME TO {quote_identifier(schema)}"),
        # The live schema keeps the comment its users gave it (none: no comment).
        *schema_comment_steps(schema, plan.snapshot.schema_comment, always=True),
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
        *grant_steps(staging, action.name, action.grants_to_add, action.grants_to_revoke),
    ]
    if action.marker_outdated:
        steps.append(marker_step(plan, action.name, staging))
    if action.comments_outdated:
        steps += comment_steps(plan, action.name, staging, created=False)
    return steps


def _in_place_grant_steps(plan: SyncPlan) -> list[Step]:
    schema = plan.schema
    steps = schema_grant_steps(schema, plan.schema_grants_to_add, plan.schema_grants_to_revoke)
    for action in plan.actions:
        steps += grant_steps(schema, action.name, action.grants_to_add, action.grants_to_revoke)
        if action.marker_outdated:
            steps.append(marker_step(plan, action.name, schema))
        if action.comments_outdated:
            steps += comment_steps(plan, action.name, schema, created=False)
    return steps
