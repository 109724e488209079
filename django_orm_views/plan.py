"""Planning: the declared views (the desired state) against the catalog -> a typed plan.

A plan compares each declared view's fingerprint with the one the package stored in the
database, and is pure once the catalog has been read (:func:`compare`). ``--check``,
``--dry-run``, ``list_views`` and every sync read the same plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from django.db import connections

from .compiler import RenderedView, fingerprint, render_view
from .conf import STRATEGIES, get_settings, validate_role_names
from .exceptions import InvalidViewError
from .introspection import CatalogSnapshot, DatabaseObject, read_catalog
from .registry import dependency_order, raise_for_problems, views_for_database
from .views import BasePostgresView, describe

__all__ = [
    "ActionKind",
    "DesiredState",
    "SyncPlan",
    "ViewAction",
    "compare",
    "desired_state",
    "plan_sync",
    "resolve_roles",
]


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
    # The view's comment or its columns' differ from the declared ones (set in place).
    comments_outdated: bool = False

    @property
    def changes_grants(self) -> bool:
        return bool(self.grants_to_add or self.grants_to_revoke)

    @property
    def is_change(self) -> bool:
        return (
            self.kind is not ActionKind.KEEP
            or self.changes_grants
            or self.marker_outdated
            or self.comments_outdated
        )

    def describe(self) -> str:
        label = f"{self.object_kind} {self.name}"
        if self.view is not None:
            label += f" [{describe(self.view)}]"
        if self.kind is not ActionKind.KEEP:
            return f"{self.kind.value} {label}: {self.reason}"
        changes = []
        if self.grants_to_add:
            changes.append("grant SELECT to " + ", ".join(sorted(self.grants_to_add)))
        if self.grants_to_revoke:
            changes.append("revoke SELECT from " + ", ".join(sorted(self.grants_to_revoke)))
        if self.comments_outdated:
            changes.append("set its comments")
        if self.marker_outdated and not changes:
            changes.append("record the roles granted by the last sync")
        return f"update {label}: {'; '.join(changes)}"


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


@dataclass(frozen=True)
class DesiredState:
    """The declared views of one database, rendered, ordered and fingerprinted."""

    database: str
    schema: str
    rendered: dict[str, RenderedView]
    order: list[str]
    fingerprints: dict[str, str]


def model_columns(view: type[BasePostgresView]) -> list[str]:
    """The columns a readable view's model reads (none for other views)."""
    meta = getattr(view, "_meta", None)
    if meta is None:
        return []
    return [field.column for field in meta.concrete_fields if field.column]


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


def resolve_roles(grant_select_permissions_to_user: str | Sequence[str] | None) -> tuple[str, ...]:
    """The roles to grant SELECT to: the setting's, then the option's; validated."""
    extra: Sequence[str]
    if grant_select_permissions_to_user is None:
        extra = ()
    elif isinstance(grant_select_permissions_to_user, str):
        extra = (grant_select_permissions_to_user,)
    else:
        extra = tuple(grant_select_permissions_to_user)
    extra = validate_role_names(extra, source="--grant-select-permissions-to-user")
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
        change = _change_reason(desired, existing, name, changing, force=force, rebuild=rebuild)
        if change is not None or existing is None:
            kind, reason = change or (ActionKind.CREATE, "new")
            changing.add(name)
            actions.append(ViewAction(kind, name, reason, item.kind, item.view))
            continue
        wanted_grants = view_grants(item, roles)
        actions.append(
            ViewAction(
                ActionKind.KEEP,
                name,
                "unchanged",
                item.kind,
                item.view,
                grants_to_add=wanted_grants - existing.grantees,
                grants_to_revoke=existing.grantees - wanted_grants,
                # The marker records the extra roles, for refreshes by swap.
                marker_outdated=existing.extra_roles
                != (frozenset() if item.hidden else extra_roles),
                comments_outdated=(existing.comment, existing.column_comments)
                != (item.comment, item.column_comments),
            )
        )
    for name in sorted(set(snapshot.owned_objects) - set(desired.rendered)):
        existing = snapshot.objects[name]
        actions.append(ViewAction(ActionKind.DROP, name, "not declared", existing.kind))
    schema_add: frozenset[str] = frozenset()
    schema_revoke: frozenset[str] = frozenset()
    if snapshot.schema_exists:
        usage = schema_roles(desired.rendered.values(), roles)
        schema_add = usage - snapshot.schema_grantees
        schema_revoke = snapshot.schema_grantees - usage
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


def view_grants(item: RenderedView, roles: Iterable[str]) -> frozenset[str]:
    """Who may read the view: the roles of the settings and of the sync, and the
    class's ``grant_select_to``; nobody for a hidden view."""
    return frozenset() if item.hidden else frozenset(roles) | item.grant_select_to


def schema_roles(items: Iterable[RenderedView], roles: Iterable[str]) -> frozenset[str]:
    """Who has USAGE on the schema: everyone who may read one of its views."""
    return frozenset(roles).union(*(item.grant_select_to for item in items))


def _change_reason(
    desired: DesiredState,
    existing: DatabaseObject | None,
    name: str,
    changing: set[str],
    *,
    force: bool,
    rebuild: frozenset[str],
) -> tuple[ActionKind, str] | None:
    """Why the view ``name`` is created or replaced; None when it is kept."""
    item = desired.rendered[name]
    if existing is None:
        return ActionKind.CREATE, "new"
    if existing.stored_missing:
        return ActionKind.REPLACE, "the stored view it points to is gone"
    if not existing.is_view or existing.kind != item.kind:
        # A table (or sequence) of that name is someone's data: listed as foreign, and
        # the plan refused.
        return ActionKind.REPLACE, f"is a {existing.kind} in the database"
    reasons = [
        (force, "--force"),
        (name in rebuild, "rebuilt with fresh data"),
        (not existing.owned, "not created by django-orm-views (taken over)"),
        (existing.fingerprint is None, "created by an older version of django-orm-views"),
        (
            item.materialized and existing.storage is None,
            "stored apart from the generations from now on (built once more)",
        ),
    ]
    for applies, reason in reasons:
        if applies:
            return ActionKind.REPLACE, reason
    if item.dependencies & changing:
        # A view reads the views it depends on by identity, so it is rebuilt with them
        # (its fingerprint usually changed too, through theirs).
        changed = sorted(item.dependencies & changing)
        rebuilt = "which is rebuilt" if len(changed) == 1 else "which are rebuilt"
        return ActionKind.REPLACE, f"depends on {', '.join(changed)}, {rebuilt}"
    if existing.fingerprint != desired.fingerprints[name]:
        return ActionKind.REPLACE, "definition changed"
    return None


def choose_strategy(strategy: str | None) -> str:
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
    # Everything that can be refused without the database is, before any query.
    roles = resolve_roles(grant_select_permissions_to_user)
    chosen_strategy = choose_strategy(strategy)
    desired = desired_state(database)
    snapshot = read_catalog(connections[database], desired.schema)
    return compare(desired, snapshot, roles=roles, strategy=chosen_strategy, force=force)
