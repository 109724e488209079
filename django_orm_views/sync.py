"""Make the views schema match the declared views: plan (desired vs actual), then apply.

A plan compares each declared view's fingerprint with the one stored in the database
(``COMMENT ON``) and is pure once the catalog has been read. Applying a plan with the
``swap`` strategy builds the new objects in a staging schema, then swaps it in with one
short transaction; the ``recreate`` strategy drops and recreates the schema in one
transaction. ``--check``, ``--dry-run`` and ``list_views`` all read the same plan.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, router, transaction

from . import signals
from .compiler import (
    RenderedView,
    fingerprint,
    quote_literal,
    quote_role,
    render_view,
    splice_schema,
)
from .conf import STRATEGIES, get_settings
from .exceptions import (
    ColumnMismatchError,
    ConnectionLostError,
    ExternalDependentsError,
    ForeignObjectsError,
    InvalidViewError,
    SyncError,
    SyncLockTimeout,
    UnknownRoleError,
    sqlstate_of,
)
from .introspection import (
    PREVIOUS_MARKER,
    SCHEMA_MARKER_PREFIX,
    STAGING_MARKER,
    CatalogSnapshot,
    ExternalDependent,
    external_dependents,
    missing_roles,
    old_schema_prefix,
    owner_marker,
    package_schemas,
    read_catalog,
    staging_schema_name,
)
from .registry import (
    databases_with_views,
    dependency_order,
    raise_for_problems,
    views_for_database,
)
from .views import BasePostgresView, describe, quote_identifier

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

# The refresh helpers live in refresh.py; they are re-exported here because
# django-orm-views 2 users import them from django_orm_views.sync.
from .refresh import refresh_materialized_view, refresh_materialized_views

__all__ = [
    "ActionKind",
    "SyncPlan",
    "SyncReport",
    "SyncResult",
    "ViewAction",
    "apply_plan",
    "databases_to_sync",
    "plan_sync",
    "refresh_materialized_view",
    "refresh_materialized_views",
    "sync_views",
]

LOCK_NOT_AVAILABLE = "55P03"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = {LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED}


class ActionKind(Enum):
    CREATE = "create"
    REPLACE = "replace"
    KEEP = "keep"
    DROP = "drop"


@dataclass(frozen=True)
class ViewAction:
    """What a sync does to one view (or one undeclared object) and why."""

    kind: ActionKind
    name: str
    reason: str
    object_kind: str
    view: type[BasePostgresView] | None = None
    grants_to_add: frozenset[str] = frozenset()
    grants_to_revoke: frozenset[str] = frozenset()
    marker_outdated: bool = False

    @property
    def changes_grants(self) -> bool:
        return bool(self.grants_to_add or self.grants_to_revoke)

    @property
    def is_change(self) -> bool:
        return self.kind is not ActionKind.KEEP or self.changes_grants or self.marker_outdated

    def describe(self) -> str:
        label = f"{self.object_kind} {self.name}"
        if self.view is not None:
            label += f" [{describe(self.view)}]"
        if self.kind is ActionKind.KEEP:
            grants = []
            if self.grants_to_add:
                grants.append("grant SELECT to " + ", ".join(sorted(self.grants_to_add)))
            if self.grants_to_revoke:
                grants.append("revoke SELECT from " + ", ".join(sorted(self.grants_to_revoke)))
            if not grants:
                return f"grants {label}: record the roles granted by the last sync"
            return f"grants {label}: {'; '.join(grants)}"
        return f"{self.kind.value} {label}: {self.reason}"


@dataclass
class SyncPlan:
    """The difference between the declared views of one database and what it holds."""

    database: str
    schema: str
    strategy: str
    force: bool
    roles: tuple[str, ...]
    rendered: dict[str, RenderedView]
    fingerprints: dict[str, str]
    order: list[str]
    snapshot: CatalogSnapshot
    actions: list[ViewAction]
    schema_grants_to_add: frozenset[str] = frozenset()
    schema_grants_to_revoke: frozenset[str] = frozenset()
    rebuild: frozenset[str] = frozenset()
    # Objects in the views schema that the package did not create (see compare()).
    foreign_objects: tuple[str, ...] = ()
    # Roles granted on top of ORM_VIEWS_GRANT_SELECT_TO (--grant-select-permissions-to-user).
    extra_roles: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        """True when the database differs from the code (something to do)."""
        return bool(self.changes or self.changes_schema_grants)

    @property
    def changes(self) -> list[ViewAction]:
        return [action for action in self.actions if action.is_change]

    @property
    def changes_views(self) -> bool:
        return any(action.kind is not ActionKind.KEEP for action in self.actions)

    @property
    def changes_schema_grants(self) -> bool:
        return bool(self.schema_grants_to_add or self.schema_grants_to_revoke)

    def actions_of(self, kind: ActionKind) -> list[ViewAction]:
        return [action for action in self.actions if action.kind is kind]

    def describe(self) -> list[str]:
        """One line for each difference, for ``--check`` and the logs."""
        lines = [action.describe() for action in self.changes]
        if self.schema_grants_to_add:
            lines.append(
                f"grants schema {self.schema}: grant USAGE to "
                + ", ".join(sorted(self.schema_grants_to_add))
            )
        if self.schema_grants_to_revoke:
            lines.append(
                f"grants schema {self.schema}: revoke USAGE from "
                + ", ".join(sorted(self.schema_grants_to_revoke))
            )
        return lines


@dataclass
class SyncResult:
    """What a sync did on one database."""

    database: str
    plan: SyncPlan
    applied: bool = False
    dry_run: bool = False
    statements: list[str] = field(default_factory=list)
    view_timings: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    dropped_leftovers: list[str] = field(default_factory=list)
    kept_old_schema: str | None = None

    def count(self, kind: ActionKind) -> int:
        return len(self.plan.actions_of(kind))

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(kind)} {label}"
            for kind, label in (
                (ActionKind.CREATE, "created"),
                (ActionKind.REPLACE, "replaced"),
                (ActionKind.DROP, "dropped"),
                (ActionKind.KEEP, "unchanged"),
            )
        )
        if self.dry_run:
            verb = "Would sync"
        elif self.applied:
            verb = "Synced"
        else:
            verb = "Views already in sync"
        return (
            f"{verb} on database '{self.database}' ({self.plan.strategy}): {counts} "
            f"in {self.duration:.2f}s."
        )


@dataclass
class SyncReport:
    """The results of a sync, one for each database it covered."""

    results: list[SyncResult]

    def __iter__(self) -> Iterator[SyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, database: str) -> SyncResult:
        for result in self.results:
            if result.database == database:
                return result
        raise KeyError(database)

    @property
    def applied(self) -> bool:
        return any(result.applied for result in self.results)


# Planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredState:
    """The declared views of one database, rendered, ordered and fingerprinted."""

    database: str
    schema: str
    rendered: dict[str, RenderedView]
    order: list[str]
    fingerprints: dict[str, str]


def desired_state(database: str, schema: str | None = None) -> DesiredState:
    schema = schema or get_settings().schema
    views = views_for_database(database)
    raise_for_problems(views, check_sql=False)
    connection = connections[database]
    rendered = {view.view_name: render_view(view, connection, schema) for view in views}
    classes = {name: item.view for name, item in rendered.items()}
    order = dependency_order(
        {name: item.dependencies for name, item in rendered.items()}, classes, schema
    )
    fingerprints: dict[str, str] = {}
    for name in order:
        item = rendered[name]
        fingerprints[name] = fingerprint(
            item,
            [
                *(fingerprints[dependency] for dependency in item.dependencies),
                # A readable view's fields are checked against its columns when it is
                # built, so a change of fields rebuilds it.
                *(f"model column {column}" for column in model_columns(item.view)),
            ],
        )
    return DesiredState(database, schema, rendered, order, fingerprints)


def _roles(grant_select_permissions_to_user: str | Sequence[str] | None) -> tuple[str, ...]:
    extra: Sequence[str]
    if grant_select_permissions_to_user is None:
        extra = ()
    elif isinstance(grant_select_permissions_to_user, str):
        extra = (grant_select_permissions_to_user,)
    else:
        extra = tuple(grant_select_permissions_to_user)
    roles: list[str] = []
    for role in (*get_settings().grant_select_to, *extra):
        if role not in roles:
            roles.append(role)
    return tuple(roles)


def compare(
    desired: DesiredState,
    snapshot: CatalogSnapshot,
    *,
    roles: tuple[str, ...],
    strategy: str,
    force: bool,
    rebuild: frozenset[str] = frozenset(),
) -> SyncPlan:
    """The plan that turns ``snapshot`` into ``desired``. Pure.

    ``rebuild`` names views to rebuild even though they are unchanged (a refresh that
    must not block readers); the views that depend on them are rebuilt with them.
    Only what the package created is ever dropped; anything else in the schema is
    listed in ``plan.foreign_objects``, and a plan that would remove it is refused.
    """
    actions: list[ViewAction] = []
    changing: set[str] = set()
    extra_roles = frozenset(roles) - frozenset(get_settings().grant_select_to)
    for name in desired.order:
        item = desired.rendered[name]
        existing = snapshot.objects.get(name)
        wanted_grants = frozenset() if item.hidden else frozenset(roles)
        wanted_extras = frozenset() if item.hidden else extra_roles
        if existing is None:
            kind, reason = ActionKind.CREATE, "new"
        elif not existing.is_view:
            # Never replaced: a table (or sequence) of that name is someone's data.
            kind, reason = ActionKind.REPLACE, f"is a {existing.kind} in the database"
        elif force:
            kind, reason = ActionKind.REPLACE, "--force"
        elif name in rebuild:
            kind, reason = ActionKind.REPLACE, "rebuilt with fresh data"
        elif existing.kind != item.kind:
            kind, reason = ActionKind.REPLACE, f"is a {existing.kind} in the database"
        elif not existing.owned:
            kind, reason = ActionKind.REPLACE, "not created by django-orm-views (taken over)"
        elif existing.fingerprint is None:
            kind, reason = ActionKind.REPLACE, "created by an older version of django-orm-views"
        elif item.dependencies & changing:
            # A view reads the views it depends on by identity, so it is rebuilt with
            # them (its fingerprint usually changed too, through theirs).
            changed_dependencies = ", ".join(sorted(item.dependencies & changing))
            kind, reason = ActionKind.REPLACE, f"depends on {changed_dependencies}, which change"
        elif existing.fingerprint != desired.fingerprints[name]:
            kind, reason = ActionKind.REPLACE, "definition changed"
        else:
            grants_to_add = wanted_grants - existing.grantees
            grants_to_revoke = existing.grantees - wanted_grants
            actions.append(
                ViewAction(
                    ActionKind.KEEP,
                    name,
                    "unchanged",
                    item.kind,
                    item.view,
                    grants_to_add=grants_to_add,
                    grants_to_revoke=grants_to_revoke,
                    # The marker records the extra roles, for refreshes by swap.
                    marker_outdated=existing.extra_roles != wanted_extras,
                )
            )
            continue
        changing.add(name)
        actions.append(ViewAction(kind, name, reason, item.kind, item.view))
    for name in sorted(set(snapshot.owned_objects) - set(desired.rendered)):
        existing = snapshot.objects[name]
        actions.append(ViewAction(ActionKind.DROP, name, "not declared", existing.kind))
    schema_add: frozenset[str] = frozenset()
    schema_revoke: frozenset[str] = frozenset()
    if snapshot.schema_exists:
        schema_add = frozenset(roles) - snapshot.schema_grantees
        schema_revoke = snapshot.schema_grantees - frozenset(roles)
    return SyncPlan(
        database=desired.database,
        schema=desired.schema,
        strategy=strategy,
        force=force,
        roles=roles,
        rendered=desired.rendered,
        fingerprints=desired.fingerprints,
        order=desired.order,
        snapshot=snapshot,
        actions=actions,
        schema_grants_to_add=schema_add,
        schema_grants_to_revoke=schema_revoke,
        rebuild=rebuild,
        foreign_objects=tuple(snapshot.foreign_objects(desired.rendered)),
        extra_roles=extra_roles,
    )


def _strategy(strategy: str | None) -> str:
    chosen = strategy or get_settings().sync_strategy
    if chosen not in STRATEGIES:
        raise InvalidViewError(
            f"Unknown sync strategy {chosen!r} (from ORM_VIEWS_SYNC_STRATEGY or --strategy). "
            f"Use one of: {', '.join(STRATEGIES)}."
        )
    return chosen


def plan_sync(
    *,
    database: str = "default",
    strategy: str | None = None,
    force: bool = False,
    grant_select_permissions_to_user: str | Sequence[str] | None = None,
) -> SyncPlan:
    """Compare the declared views of ``database`` with what it holds. Changes nothing;
    ``bool(plan)`` is False when the database already matches the code."""
    desired = desired_state(database)
    snapshot = read_catalog(connections[database], desired.schema)
    return compare(
        desired,
        snapshot,
        roles=_roles(grant_select_permissions_to_user),
        strategy=_strategy(strategy),
        force=force,
    )


# Compiling a plan into statements -------------------------------------------------------


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
    drop_schema: str | None = None

    @property
    def statements(self) -> list[str]:
        statements = [step.sql for phase in self.phases for step in phase.steps]
        if self.drop_schema:
            statements.append(_drop_schema_sql(self.drop_schema))
        return statements


def _drop_schema_sql(schema: str) -> str:
    return f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE"


def _qualified(schema: str, name: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


def _keyword(object_kind: str) -> str:
    return "MATERIALIZED VIEW" if object_kind == "materialized view" else "VIEW"


def _grant_steps(
    schema: str, name: str, object_kind: str, add: Iterable[str], revoke: Iterable[str]
) -> list[Step]:
    # GRANT ... ON TABLE covers views and materialized views alike.
    target = f"TABLE {_qualified(schema, name)}"
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


def _create_steps(plan: SyncPlan, names: Iterable[str], target_schema: str) -> list[Step]:
    """CREATE, COMMENT and GRANT of ``names`` (in dependency order) in ``target_schema``;
    references between them are rewritten to ``target_schema``."""
    chosen = frozenset(names)
    steps = []
    for name in (name for name in plan.order if name in chosen):
        item = plan.rendered[name]
        select_sql = None
        if target_schema != plan.schema:
            select_sql = splice_schema(
                item.select_sql, item.schema_references, target_schema, chosen
            )
        for sql in item.create_statements(target_schema, select_sql):
            steps.append(Step(sql, name))
        steps.extend(_populate_steps(plan, name, target_schema))
        steps.append(_marker_step(plan, name, target_schema))
        if not item.hidden:
            steps.extend(_grant_steps(target_schema, name, item.kind, plan.roles, ()))
    return steps


def _marker_step(plan: SyncPlan, name: str, target_schema: str) -> Step:
    """The package's ownership marker and fingerprint, on the view's ``_RETURN`` rule
    (the view's own comment belongs to the user)."""
    extra_roles = () if plan.rendered[name].hidden else plan.extra_roles
    marker = quote_literal(owner_marker(plan.fingerprints[name], extra_roles))
    return Step(f'COMMENT ON RULE "_RETURN" ON {_qualified(target_schema, name)} IS {marker}', name)


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
    target = _qualified(target_schema, name)
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
        Step(f"DROP {_keyword(item.kind)} IF EXISTS {_qualified(plan.schema, item.name)} CASCADE")
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


def compile_plan(plan: SyncPlan, connection: BaseDatabaseWrapper) -> CompiledPlan:
    """The statements that apply ``plan``, grouped in phases. Reads (never writes) the
    catalog to find objects outside the schema that depend on its views, and refuses a
    plan that would drop or replace anything the package did not create."""
    raise_for_foreign_objects(plan)
    schema = plan.schema
    live_exists = plan.snapshot.schema_exists
    dependents = (
        external_dependents(connection, schema, package_schemas=package_schemas(plan.snapshot))
        if live_exists
        else []
    )

    if not plan.changes_views:
        # Only grants differ: change them in place, nothing to rebuild.
        return CompiledPlan([Phase("grants", _in_place_grant_steps(plan))])

    if plan.strategy == "recreate":
        if dependents:
            _raise_for_dependents(plan, dependents)
        steps = [
            *_drop_dependents_first(plan),
            Step(_drop_schema_sql(schema)),
            Step(f"CREATE SCHEMA {quote_identifier(schema)}"),
            *_schema_comment_steps(schema, plan.snapshot.schema_comment),
            *_schema_grant_steps(schema, plan.roles, ()),
            *_create_steps(plan, plan.order, schema),
        ]
        return CompiledPlan([Phase("recreate", steps, retry_on_lock=True, verify_in=schema)])

    # Swap: keep unchanged materialized views (and anything an outside object depends
    # on) by moving them across; build everything else in the staging schema.
    kept = {action.name for action in plan.actions_of(ActionKind.KEEP)}
    depended_on = {dependent.view for dependent in dependents}
    moved: set[str] = set()
    pending = [name for name in kept if plan.rendered[name].materialized or name in depended_on]
    while pending:
        name = pending.pop()
        if name in moved:
            continue
        moved.add(name)
        pending.extend(plan.rendered[name].dependencies)
    blocking = [dependent for dependent in dependents if dependent.view not in moved]
    if blocking:
        _raise_for_dependents(plan, blocking)

    staging = staging_schema_name(schema)
    built = [name for name in plan.order if name not in moved]
    build = [
        Step(f"CREATE SCHEMA {quote_identifier(staging)}"),
        Step(f"COMMENT ON SCHEMA {quote_identifier(staging)} IS {quote_literal(STAGING_MARKER)}"),
        *_schema_grant_steps(staging, plan.roles, ()),
        *_create_steps(plan, built, staging),
    ]
    swap: list[Step] = []
    for action in plan.actions:
        if action.name in moved:
            swap.append(
                Step(
                    f"ALTER {_keyword(action.object_kind)} {_qualified(schema, action.name)} "
                    f"SET SCHEMA {quote_identifier(staging)}",
                    action.name,
                )
            )
            swap += _grant_steps(
                staging,
                action.name,
                action.object_kind,
                action.grants_to_add,
                action.grants_to_revoke,
            )
            if action.marker_outdated:
                swap.append(_marker_step(plan, action.name, staging))
    old_schema = None
    if live_exists:
        old_schema = f"{old_schema_prefix(schema)}{uuid.uuid4().hex[:8]}"
        swap += [
            Step(
                f"ALTER SCHEMA {quote_identifier(schema)} RENAME TO {quote_identifier(old_schema)}"
            ),
            Step(
                f"COMMENT ON SCHEMA {quote_identifier(old_schema)} "
                f"IS {quote_literal(PREVIOUS_MARKER)}"
            ),
        ]
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
        drop_schema=old_schema,
    )


def _in_place_grant_steps(plan: SyncPlan) -> list[Step]:
    schema = plan.schema
    steps = _schema_grant_steps(schema, plan.schema_grants_to_add, plan.schema_grants_to_revoke)
    for action in plan.actions:
        steps += _grant_steps(
            schema,
            action.name,
            action.object_kind,
            action.grants_to_add,
            action.grants_to_revoke,
        )
        if action.marker_outdated:
            steps.append(_marker_step(plan, action.name, schema))
    return steps


def _schema_comment_steps(schema: str, comment: str | None, *, always: bool = False) -> list[Step]:
    if comment is None and not always:
        return []
    text = "NULL" if comment is None else quote_literal(comment)
    return [Step(f"COMMENT ON SCHEMA {quote_identifier(schema)} IS {text}")]


# Applying ------------------------------------------------------------------------------


def _advisory_key(schema: str) -> int:
    digest = hashlib.sha256(f"django_orm_views:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def sync_lock(connection: BaseDatabaseWrapper, schema: str, wait: float) -> Iterator[None]:
    """Open a transaction that holds the database's sync lock until it ends.

    The lock is a transaction-level advisory lock: it cannot outlive the transaction
    (a terminated backend, a transaction-mode pooler handing the session to someone
    else), and everything done under it is in that one transaction, so a sync that
    loses its connection loses its work with its lock and never goes on without it.
    Inside an outer transaction the lock is held until that transaction ends.
    """
    key = _advisory_key(schema)
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
            if cursor.fetchone()[0]:
                yield
                return
            if time.monotonic() >= deadline:
                cursor.execute(
                    "SELECT string_agg(pid::text, ', ') FROM pg_locks WHERE locktype = "
                    "'advisory' AND granted AND classid = %s AND objid = %s",
                    [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
                )
                holders = cursor.fetchone()[0] or "unknown"
                raise SyncLockTimeout(
                    f"Another sync of database '{connection.alias}' (backend pid {holders}) "
                    f"held the sync lock for more than {wait:g}s. Let it finish and run "
                    "sync_views again, or raise ORM_VIEWS_SYNC_LOCK_WAIT."
                )
        # Wait between attempts outside any transaction of ours: through a
        # transaction-mode pooler, a sync sleeping in an open transaction keeps one of
        # the pool's few server connections from every other client (readers included)
        # for as long as it waits.
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# Views whose statements go to the server in one round trip when their durations are not
# wanted. A failing batch is rolled back and run again one view at a time, so that the
# error names its view.
VIEWS_PER_BATCH = 50

# SQLSTATE classes of a lost connection: 08 (connection exception) and 57 (operator
# intervention: pg_terminate_backend, a shutdown, a failover).
CONNECTION_LOST_CLASSES = ("08", "57")


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the session is gone (rather than a refused statement)."""
    code = sqlstate_of(error)
    if code is not None:
        return code[:2] in CONNECTION_LOST_CLASSES and code != "57014"  # 57014: a timeout
    cause = error.__cause__ or error
    return type(cause).__name__ in ("OperationalError", "InterfaceError")


def _lost_connection_error(database: str, stage: str, error: BaseException) -> SyncError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConnectionLostError(
        f"Sync of database '{database}' lost its connection to PostgreSQL {stage} "
        f"({detail}). Its transaction was rolled back with its lock: the live views are "
        "unchanged. Run sync_views again."
    )


def _execute_phase(
    connection: BaseDatabaseWrapper,
    phase: Phase,
    plan: SyncPlan,
    timings: dict[str, float],
    *,
    views_per_batch: int = 1,
    outermost: bool = True,
) -> None:
    try:
        _execute_phase_batches(connection, phase, plan, timings, views_per_batch, outermost)
    except SyncError as error:
        if (
            views_per_batch == 1
            or sqlstate_of(error) in RETRYABLE_SQLSTATES
            or isinstance(error, ConnectionLostError)
        ):
            raise
        _execute_phase_batches(connection, phase, plan, timings, 1, outermost)


def _phase_settings(phase: Phase) -> list[tuple[str, str]]:
    settings = get_settings()
    values = []
    if phase.lock_timeout:
        values.append(("lock_timeout", f"{settings.swap_lock_timeout_ms}ms"))
    if phase.bounded:
        bound = f"{swap_timeout_ms()}ms"
        values += [("statement_timeout", bound), ("idle_in_transaction_session_timeout", bound)]
    return values


def _execute_phase_batches(
    connection: BaseDatabaseWrapper,
    phase: Phase,
    plan: SyncPlan,
    timings: dict[str, float],
    views_per_batch: int,
    outermost: bool,
) -> None:
    attempts = get_settings().swap_attempts if phase.retry_on_lock else 1
    delay = 0.01
    local_settings = _phase_settings(phase)
    for attempt in range(1, attempts + 1):
        try:
            # A savepoint of the sync's transaction: a retry starts the phase afresh.
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                previous = _set_local(cursor, local_settings)
                for step in phase.batches(views_per_batch):
                    started = time.perf_counter()
                    _execute_step(cursor, step, plan)
                    if step.view is not None:
                        timings[step.view] = timings.get(step.view, 0.0) + (
                            time.perf_counter() - started
                        )
                if phase.verify_in is not None:
                    verify_readable_columns(cursor, plan, phase.verify_in)
                # The sync's own transaction commits right after a bounded phase: its
                # timeouts stay in force until then, so that a sync stopped before its
                # COMMIT is ended by the server instead of stalling readers.
                if previous and not (phase.bounded and outermost):
                    _set_local(cursor, previous)
            return
        except SyncError as error:
            if sqlstate_of(error) in RETRYABLE_SQLSTATES and attempt < attempts:
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            raise


def _set_local(cursor: Any, values: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Set ``values`` for the rest of the transaction; returns the previous ones."""
    if not values:
        return []
    cursor.execute(
        "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in values),
        [item for name, value in values for item in (name, name, value)],
    )
    row = cursor.fetchone()
    return [(name, row[index * 2]) for index, (name, _) in enumerate(values)]


def swap_timeout_ms() -> int:
    return int(getattr(get_settings(), "swap_timeout_ms", 1000))


def _execute_step(cursor: Any, step: Step, plan: SyncPlan) -> None:
    try:
        cursor.execute(step.sql)
    except DatabaseError as error:
        if connection_lost(error):
            raise _lost_connection_error(plan.database, "while it ran", error) from error
        message = str(error).strip()
        if step.view is not None and step.view in plan.rendered:
            subject = f"View {describe(plan.rendered[step.view].view)}"
            fix = "Fix the view's SQL, then run sync_views again."
        else:
            subject = f"Sync of database '{plan.database}'"
            fix = "Fix the cause, then run sync_views again."
        if sqlstate_of(error) in RETRYABLE_SQLSTATES:
            fix = "Readers held locks for too long; run sync_views again."
        raise SyncError(
            f"{subject}: PostgreSQL refused `{_shorten(step.sql)}`: {message}. The live views "
            f"are unchanged. {fix}"
        ) from error


def _shorten(sql: str, limit: int = 200) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


COLUMNS_QUERY = """
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relname = ANY(%s)
GROUP BY c.relname
"""


def model_columns(view: type[BasePostgresView]) -> list[str]:
    """The columns a readable view's model reads (none for other views)."""
    meta = getattr(view, "_meta", None)
    if meta is None:
        return []
    return [field.column for field in meta.concrete_fields if field.column]


def verify_readable_columns(cursor: Any, plan: SyncPlan, schema: str) -> None:
    """Compare each readable view built in ``schema`` with its model: a field without a
    column would only fail when a query reads it. Raises before anything is swapped in."""
    readable = {
        name: columns for name in plan.order if (columns := model_columns(plan.rendered[name].view))
    }
    if not readable:
        return
    cursor.execute(COLUMNS_QUERY, [schema, sorted(readable)])
    built = {name: list(columns) for name, columns in cursor.fetchall()}
    for name in plan.order:
        if name not in built or name not in readable:
            continue
        missing = [column for column in readable[name] if column not in built[name]]
        if missing:
            view = plan.rendered[name].view
            column = missing[0]
            close = difflib.get_close_matches(column, built[name], n=1)
            hint = f"; the closest column is {close[0]!r}" if close else ""
            raise ColumnMismatchError(
                f"View {describe(view)}: field column {column!r} is not a column of the view "
                f"(its columns: {', '.join(built[name])}){hint}. Rename the field (or set its "
                "db_column), or select that column in the view's SQL. Nothing was changed."
            )


def _unsafe_to_drop(connection: BaseDatabaseWrapper, schema: str) -> str | None:
    """Why ``schema`` must not be dropped, or None: it must be a working schema the
    package marked, hold nothing but the package's views, and nothing outside may
    depend on them."""
    snapshot = read_catalog(connection, schema)
    if not snapshot.schema_exists:
        return None
    comment = snapshot.schema_comment or ""
    if not comment.startswith(SCHEMA_MARKER_PREFIX):
        return f"schema {schema} was not created by django-orm-views"
    foreign = snapshot.foreign_objects()
    if foreign:
        return (
            f"schema {schema} holds objects django-orm-views did not create: {', '.join(foreign)}"
        )
    own = package_schemas(read_catalog(connection, get_settings().schema))
    outside = external_dependents(connection, schema, package_schemas=own)
    if outside:
        listed = "; ".join(describe_dependent(schema, dependent) for dependent in outside)
        return f"objects outside it depend on its views ({listed})"
    return None


def drop_schema(connection: BaseDatabaseWrapper, schema: str, *, attempts: int = 10) -> bool:
    """Drop a working schema (staging, previous generation) of the package, unless it is
    not the package's, holds anything else, an outside object depends on it, or readers
    keep it locked. Returns whether it is gone; the next sync tries again."""
    delay = 0.01
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                if _unsafe_to_drop(connection, schema) is not None:
                    return False
                previous = _set_local(
                    cursor, [("lock_timeout", f"{get_settings().swap_lock_timeout_ms}ms")]
                )
                cursor.execute(_drop_schema_sql(schema))
                if connection.in_atomic_block and len(connection.atomic_blocks) > 1:
                    _set_local(cursor, previous)
            return True
        except DatabaseError as error:
            if connection_lost(error):
                # The views are already swapped; the next sync drops this schema.
                connection.close()
                return False
            if sqlstate_of(error) not in RETRYABLE_SQLSTATES or attempt == attempts:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return False


def _check_roles(connection: BaseDatabaseWrapper, plan: SyncPlan) -> None:
    missing = missing_roles(connection, [role for role in plan.roles if role != "public"])
    if missing:
        configured = set(get_settings().grant_select_to)
        sources = [
            f"{role!r} (from {'ORM_VIEWS_GRANT_SELECT_TO' if role in configured else '--grant-select-permissions-to-user'})"
            for role in missing
        ]
        raise UnknownRoleError(
            f"Cannot grant SELECT on database '{plan.database}': role(s) "
            f"{', '.join(sources)} do not exist. Create them (CREATE ROLE ...) or remove "
            "them from the setting or option. Nothing was changed."
        )


def apply_plan(plan: SyncPlan, *, time_each_view: bool = False) -> SyncResult:
    """Execute ``plan`` in one transaction that holds the database's sync lock: re-read
    the catalog under it (another sync may have done the work meanwhile), build beside
    the live views and swap them in. Then drop the replaced schema, and read the
    catalog once more: a sync that returns has made the database match the code.

    ``time_each_view`` sends each view's statements on their own, to report how long
    each took (``result.view_timings``); otherwise they go in batches of several views.
    """
    started = time.perf_counter()
    connection = connections[plan.database]
    result = SyncResult(database=plan.database, plan=plan)
    if not plan and not plan.snapshot.leftover_schemas:
        result.duration = time.perf_counter() - started
        return result
    desired = DesiredState(plan.database, plan.schema, plan.rendered, plan.order, plan.fingerprints)
    outermost = not connection.in_atomic_block
    compiled: CompiledPlan | None = None
    stage = "while it waited for the sync lock"
    try:
        with sync_lock(connection, plan.schema, get_settings().sync_lock_wait):
            stage = "while it ran"
            snapshot = read_catalog(connection, plan.schema)
            plan = _replan(desired, snapshot, plan)
            result.plan = plan
            if plan:
                _check_roles(connection, plan)
                compiled = compile_plan(plan, connection)
                signals.pre_sync.send(sender=SyncPlan, plan=plan, database=plan.database)
                for phase in compiled.phases:
                    _execute_phase(
                        connection,
                        phase,
                        plan,
                        result.view_timings,
                        views_per_batch=1 if time_each_view else VIEWS_PER_BATCH,
                        outermost=outermost,
                    )
                result.statements = compiled.statements
            stage = "while it committed"
    except DatabaseError as error:
        if connection_lost(error):
            raise _lost_connection_error(plan.database, stage, error) from error
        raise
    result.applied = compiled is not None
    for leftover in snapshot.leftover_schemas:
        if drop_schema(connection, leftover):
            result.dropped_leftovers.append(leftover)
    old_schema = compiled.drop_schema if compiled is not None else None
    if old_schema and not drop_schema(connection, old_schema):
        result.kept_old_schema = old_schema
    if result.applied:
        _verify_applied(connection, desired, plan)
    result.duration = time.perf_counter() - started
    if result.applied:
        signals.post_sync.send(sender=SyncPlan, plan=plan, result=result, database=plan.database)
    return result


def _replan(desired: DesiredState, snapshot: CatalogSnapshot, plan: SyncPlan) -> SyncPlan:
    return compare(
        desired,
        snapshot,
        roles=plan.roles,
        strategy=plan.strategy,
        force=plan.force,
        rebuild=plan.rebuild,
    )


def _verify_applied(connection: BaseDatabaseWrapper, desired: DesiredState, plan: SyncPlan) -> None:
    """Exit status 0 means the database matches the code: read it back and compare."""
    try:
        snapshot = read_catalog(connection, plan.schema)
    except DatabaseError as error:
        raise _lost_connection_error(plan.database, "after it committed", error) from error
    left = compare(desired, snapshot, roles=plan.roles, strategy=plan.strategy, force=False)
    if left:
        raise SyncError(
            f"Sync of database '{plan.database}' finished, but the database still differs "
            f"from the declared views: {'; '.join(left.describe())}. Run sync_views again; "
            "if this persists, report it with the output of `sync_views --check`."
        )


def rebuild_views(
    views: Iterable[type[BasePostgresView]], *, database: str = "default"
) -> SyncResult:
    """Rebuild ``views`` (and the views that depend on them) beside the live ones and
    swap them in: fresh contents for a materialized view without blocking its readers."""
    desired = desired_state(database)
    snapshot = read_catalog(connections[database], desired.schema)
    plan = compare(
        desired,
        snapshot,
        # The roles of the settings and those the last sync recorded in its markers
        # (--grant-select-permissions-to-user); never whatever else the catalog holds.
        roles=_roles(sorted(snapshot.extra_roles)),
        strategy="swap",
        force=False,
        rebuild=frozenset(view.view_name for view in views),
    )
    return apply_plan(plan)


def databases_to_sync() -> list[str]:
    """The aliases a sync covers by default, in settings order: every one with declared
    views, and every other PostgreSQL database (not a test mirror, migrated by this
    app) whose views schema holds the package's views: with their classes gone (an app
    removed from INSTALLED_APPS), a sync drops them and ``--check`` reports them."""
    with_views = set(databases_with_views())
    schema = get_settings().schema
    aliases = []
    for alias in connections:
        if alias not in with_views:
            connection = connections[alias]
            if (
                connection.vendor != "postgresql"
                or connection.settings_dict.get("TEST", {}).get("MIRROR")
                or not router.allow_migrate(alias, "django_orm_views")
                or not read_catalog(connection, schema).holds_package_objects
            ):
                continue
        aliases.append(alias)
    return aliases


def sync_views(
    *,
    database: str | None = None,
    strategy: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    grant_select_permissions_to_user: str | Sequence[str] | None = None,
    time_each_view: bool = False,
) -> SyncReport:
    """Make the views schema of ``database`` (default: every alias with views) match
    the declared views. With ``dry_run``, only work out the statements; with
    ``time_each_view``, measure each view's statements (one round trip each)."""
    aliases = [database] if database else databases_to_sync()
    results = []
    for alias in aliases:
        started = time.perf_counter()
        plan = plan_sync(
            database=alias,
            strategy=strategy,
            force=force,
            grant_select_permissions_to_user=grant_select_permissions_to_user,
        )
        if dry_run:
            result = SyncResult(database=alias, plan=plan, dry_run=True)
            if plan:
                result.statements = compile_plan(plan, connections[alias]).statements
            result.duration = time.perf_counter() - started
        else:
            result = apply_plan(plan, time_each_view=time_each_view)
            result.duration = time.perf_counter() - started
        results.append(result)
    return SyncReport(results)
