"""The statements of one view or one schema: grants, comments, the package's marker,
the filling of a materialized view; and the steps and phases that carry them.

Pure: a plan in, SQL out. Every identifier and literal goes through ``sql``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .introspection import CatalogSnapshot, owner_marker, previous_marker
from .plan import SyncPlan
from .sql import object_keyword, qualified_name, quote_identifier, quote_literal, quote_role

__all__ = [
    "CompiledPlan",
    "Phase",
    "Step",
    "comment_steps",
    "drop_schema_sql",
    "grant_steps",
    "marker_step",
    "narrowed_grants",
    "populate_steps",
    "regrant_steps",
    "retire_generation_steps",
    "revoke_steps",
    "schema_comment_steps",
    "schema_grant_steps",
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


def grant_steps(schema: str, name: str, add: Iterable[str], revoke: Iterable[str]) -> list[Step]:
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


def schema_grant_steps(schema: str, add: Iterable[str], revoke: Iterable[str]) -> list[Step]:
    steps = []
    if revoke := sorted(revoke):
        roles = ", ".join(quote_role(role) for role in revoke)
        steps.append(Step(f"REVOKE USAGE ON SCHEMA {quote_identifier(schema)} FROM {roles}"))
    if add := sorted(add):
        roles = ", ".join(quote_role(role) for role in add)
        steps.append(Step(f"GRANT USAGE ON SCHEMA {quote_identifier(schema)} TO {roles}"))
    return steps


def comment_steps(
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


def marker_step(
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


def populate_steps(plan: SyncPlan, name: str, target_schema: str) -> list[Step]:
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


def revoke_steps(schema: str, revoked: Mapping[str, Iterable[str]]) -> list[Step]:
    """REVOKE ``revoked`` (by view name; ``""``: USAGE on the schema) in ``schema``."""
    steps = schema_grant_steps(schema, (), revoked.get("", ()))
    for name, roles in sorted(revoked.items()):
        if name:
            steps += grant_steps(schema, name, (), roles)
    return steps


def regrant_steps(schema: str, revoked: Iterable[tuple[str, Iterable[str]]]) -> list[Step]:
    """Give back the grants revoked from a generation when it was replaced (a rollback
    swaps it back in with the grants it had)."""
    steps = []
    for name, roles in revoked:
        if name:
            steps += grant_steps(schema, name, roles, ())
        else:
            steps += schema_grant_steps(schema, roles, ())
    return steps


def schema_comment_steps(schema: str, comment: str | None, *, always: bool = False) -> list[Step]:
    if comment is None and not always:
        return []
    text = "NULL" if comment is None else quote_literal(comment)
    return [Step(f"COMMENT ON SCHEMA {quote_identifier(schema)} IS {text}")]


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
