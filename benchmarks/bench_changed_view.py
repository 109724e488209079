"""One changed plain view among 200, with 5 materialized views over a 1,000,000-row
table: the sync's time as a share of a full sync, and proof that the materialized views
were not repopulated.

The 200 views are those of ``bench_sync_200.py`` (10 chains, 5 materialized roots with a
unique index on ``id``), but the base table has ``--rows`` rows and each materialized
root holds all of them. The changed view is the last view of chain 0, a plain view that
no other view reads; each repeat gives it a new constant column.

Figures:
- full sync: ``sync_views()`` (default strategy, swap) into a database without the
  views schema: every materialized view is populated (the reference, 100%).
- changed-view sync: ``sync_views()`` after one plain view changed, as a % of the full
  sync. The materialized views must be kept: their ``pg_class`` oid and relfilenode must
  not change, and no ``CREATE MATERIALIZED VIEW`` / ``REFRESH`` may run.
- floor of the change: that view's ``CREATE OR REPLACE VIEW`` and the package's marker
  (``COMMENT ON RULE "_RETURN"``, which holds the view's fingerprint) run directly
  through psycopg2 in one transaction (what a hand-written migration would do).

Run: ``.venv/bin/python benchmarks/bench_changed_view.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import time
from typing import Any

import _common as common
from benchapp.catalog import Spec, base_table_statements, change_view, leaf_of_materialized_chain

SCRIPT = "bench_changed_view"


# The stored materialized view each live view of the schema points to (its marker names
# the storage schema).
STORED_IDENTITIES = """
SELECT c.relname, s.oid, s.relfilenode
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
JOIN pg_namespace AS sn
    ON sn.nspname = substring(obj_description(r.oid, 'pg_rewrite') FROM '"storage": "([^"]+)"')
JOIN pg_class AS s ON s.relnamespace = sn.oid AND s.relname = c.relname AND s.relkind = 'm'
WHERE n.nspname = 'views' AND c.relname = ANY(%s)
"""


def matview_identities(cursor: Any, names: list[str]) -> dict[str, tuple[int, int]]:
    """(oid, relfilenode) of each materialized view, where it is stored: both change when
    it is rebuilt or repopulated."""
    cursor.execute(STORED_IDENTITIES, [names])
    found = {name: (int(oid), int(filenode)) for name, oid, filenode in cursor.fetchall()}
    assert sorted(found) == sorted(names), f"stored views not found: {set(names) - set(found)}"
    return found


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1_000_000, repeat=3)
    database = common.create_database("changed_view")
    try:
        run(database, args)
    finally:
        common.drop_database(database)


def run(database: common.Database, args: Any) -> None:
    spec = Spec(kind="chains", views=200, chains=10, materialized=5)
    started = time.perf_counter()
    common.run_statements(database, base_table_statements(spec.base_table, args.rows))
    setup_seconds = time.perf_counter() - started
    common.configure_django(database, spec)
    common.migrate()
    from django.db import connections

    from django_orm_views.introspection import owner_marker
    from django_orm_views.sql import quote_literal
    from django_orm_views.sync import ActionKind, plan_sync, sync_views

    env = common.environment(database)
    declared = common.declared_views()
    materialized = [name for name, view in declared.items() if view.is_materialized()]
    changed_name = leaf_of_materialized_chain(spec)
    changed = declared[changed_name]
    assert not changed.is_materialized()
    print(
        f"{len(declared)} views ({len(materialized)} materialized over {args.rows:,} rows "
        f"each, base table built in {setup_seconds:.1f}s); changed view: {changed_name}; "
        f"{args.repeat} repeats; PostgreSQL {env['postgresql']}, {env['cpus']} CPUs, "
        f"load {env['load_average_at_start']}"
    )

    # Warm up the process (imports, parser) on a dry run: no timing includes them.
    sync_views(dry_run=True)

    full_times: list[float] = []
    changed_times: list[float] = []
    floor_times: list[float] = []
    repopulated = 0
    matview_statements = 0
    kept_counts: list[int] = []
    built_counts: list[int] = []
    revision = 0
    for repeat in range(args.repeat):
        common.reset_views(database)
        elapsed, report = common.timed(lambda: sync_views())
        assert report["default"].applied
        full_times.append(elapsed)
        print(f"  repeat {repeat + 1}: full sync {common.fmt_ms(elapsed)}", end="", flush=True)

        raw = database.connect()
        with raw.cursor() as cursor:
            before = matview_identities(cursor, materialized)
        revision += 1
        change_view(changed, revision)
        common.warm_up_django()
        elapsed, report = common.timed(lambda: sync_views())
        result = report["default"]
        assert result.applied
        changed_times.append(elapsed)
        replaced = [action.name for action in result.plan.actions_of(ActionKind.REPLACE)]
        assert replaced == [changed_name], replaced
        kept_counts.append(
            sum(
                1
                for action in result.plan.actions_of(ActionKind.KEEP)
                if action.name in materialized
            )
        )
        # Views created from their SQL in the new generation (plain views are cheap to
        # create again), not counting the views that only point to a stored one.
        built_counts.append(
            sum(
                1
                for sql in result.statements
                if sql.startswith(("CREATE VIEW", "CREATE MATERIALIZED"))
                and 'AS SELECT * FROM "views__data_' not in sql
            )
        )
        matview_statements += sum(
            1
            for sql in result.statements
            if sql.startswith(("CREATE MATERIALIZED VIEW", "REFRESH MATERIALIZED VIEW"))
        )
        with raw.cursor() as cursor:
            after = matview_identities(cursor, materialized)
        repopulated += sum(1 for name in materialized if before.get(name) != after.get(name))
        print(f", changed-view sync {common.fmt_ms(elapsed)}", end="", flush=True)

        # Floor: the one change by hand (CREATE OR REPLACE VIEW + its marker, 1 transaction).
        revision += 1
        change_view(changed, revision)
        plan = plan_sync(database="default")
        item = plan.rendered[changed_name]
        marker = quote_literal(owner_marker(plan.fingerprints[changed_name], plan.extra_roles))
        statements = [
            item.create_statements("views")[0].replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1),
            f'COMMENT ON RULE "_RETURN" ON "views"."{changed_name}" IS {marker}',
        ]
        raw.autocommit = False
        started = time.perf_counter()
        with raw.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        raw.commit()
        floor_times.append(time.perf_counter() - started)
        raw.close()
        assert not plan_sync(database="default"), "the hand-made change left the schema out of sync"
        print(f", floor {common.fmt_ms(floor_times[-1])}")
    connections.close_all()

    full = common.median(full_times)
    change = common.median(changed_times)
    floor = common.median(floor_times)
    share = 100 * change / full

    table = common.Table(
        f"{SCRIPT}: 1 plain view changed among {len(declared)}, "
        f"{len(materialized)} materialized views x {args.rows:,} rows"
    )
    table.add("floor: CREATE OR REPLACE VIEW + marker via psycopg2", common.fmt_ms(floor), "1.00x")
    table.add(
        "changed-view sync_views() (swap)",
        common.fmt_ms(change),
        common.fmt_ratio(common.ratio(change, floor)),
        f"{share:.1f}% of the full sync; {int(common.median(built_counts))} plain views "
        f"created again, {int(common.median(kept_counts))} materialized kept where stored",
    )
    table.add(
        "full sync_views() (swap, empty schema)",
        common.fmt_ms(full),
        common.fmt_ratio(common.ratio(full, floor)),
        "100%",
    )
    table.print()

    print()
    common.summary(
        f"changed-view sync: {common.fmt_ms(change)} median = {share:.1f}% of the full sync "
        f"({common.fmt_ms(full)}) (target <= 10%: {common.verdict(share <= 10)}); "
        f"{common.fmt_ratio(common.ratio(change, floor))} the hand-written change "
        f"({common.fmt_ms(floor)})"
    )
    common.summary(
        f"materialized views repopulated by the changed-view sync: {repopulated} "
        f"(oid/relfilenode changes over {args.repeat} syncs), {matview_statements} "
        f"CREATE/REFRESH MATERIALIZED VIEW statements (target 0: "
        f"{common.verdict(repopulated == 0 and matview_statements == 0)})"
    )

    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {
                "views": len(declared),
                "materialized": len(materialized),
                "rows": args.rows,
                "repeat": args.repeat,
                "changed_view": changed_name,
            },
            "environment": env,
            "figures": {
                "full_sync_ms": common.ms(full),
                "changed_view_sync_ms": common.ms(change),
                "changed_view_sync_pct_of_full": share,
                "changed_view_floor_ms": common.ms(floor),
                "changed_view_vs_floor_ratio": common.ratio(change, floor),
                "views_rebuilt_by_changed_sync": int(common.median(built_counts)),
                "materialized_kept": int(common.median(kept_counts)),
                "materialized_repopulated": repopulated,
                "materialized_statements_in_changed_sync": matview_statements,
            },
            "samples_ms": {
                "full_sync": [common.ms(value) for value in full_times],
                "changed_view_sync": [common.ms(value) for value in changed_times],
                "floor": [common.ms(value) for value in floor_times],
            },
            "targets": {"changed_view_sync_pct_of_full_max": 10, "materialized_repopulated": 0},
        },
        args,
    )


if __name__ == "__main__":
    main()
