"""Building a materialized view that older snapshots can read: ``WITH NO DATA`` followed
by ``REFRESH MATERIALIZED VIEW`` (what the package runs) against ``CREATE MATERIALIZED
VIEW ... WITH DATA``, for a view of ``--rows`` rows with a unique index on ``id``.

Why the package pays for it: rows written by ``CREATE MATERIALIZED VIEW ... AS ... WITH
DATA`` carry the creating transaction's id, so a REPEATABLE READ or SERIALIZABLE
transaction whose snapshot is older finds the new view empty; rows written by ``REFRESH
MATERIALIZED VIEW`` are frozen, and that transaction reads them all. The script records
it: a reader opens a REPEATABLE READ transaction and takes its snapshot (without touching
the view) before each build, then counts the rows of the new view.

Figures (medians over ``--repeat`` builds; the three builds alternate within a repeat):
- floor: ``CREATE MATERIALIZED VIEW ... AS ... WITH DATA`` + ``CREATE UNIQUE INDEX``
  through psycopg2 in one transaction, on a connection opened beforehand;
- the package's statements: ``CREATE MATERIALIZED VIEW ... WITH NO DATA`` + ``REFRESH
  MATERIALIZED VIEW`` + ``CREATE UNIQUE INDEX``, the same way; target <= 1.3x the floor;
- the package itself: ``sync_views(force=True)`` of one declared materialized view over
  the same SELECT (default strategy, swap: built in a staging schema, swapped in, the
  previous generation dropped), for information against the floor.

Run: ``.venv/bin/python benchmarks/bench_snapshot_build.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import _common as common
from benchapp.catalog import Spec, base_table_statements

SCRIPT = "bench_snapshot_build"
RAW_SCHEMA = "bench_raw"
RAW_VIEW = f'"{RAW_SCHEMA}"."snapshot_mv"'
DECLARED_VIEW = '"views"."bench_snapshotmv"'
TARGET_RATIO = 1.3
BUILDS = ("with_data", "no_data_refresh", "sync_force")
BUILD_LABELS = {
    "with_data": "floor: CREATE ... WITH DATA + unique index via psycopg2",
    "no_data_refresh": "WITH NO DATA + REFRESH + unique index via psycopg2",
    "sync_force": "sync_views(force=True), 1 materialized view (swap)",
}


def raw_statements(select_sql: str, *, refresh: bool) -> list[str]:
    index = f'CREATE UNIQUE INDEX "snapshot_mv_id" ON {RAW_VIEW} ("id")'
    if refresh:
        return [
            f"CREATE MATERIALIZED VIEW {RAW_VIEW} AS {select_sql}\nWITH NO DATA",
            f"REFRESH MATERIALIZED VIEW {RAW_VIEW}",
            index,
        ]
    return [f"CREATE MATERIALIZED VIEW {RAW_VIEW} AS {select_sql}\nWITH DATA", index]


def raw_build(database: common.Database, statements: list[str]) -> float:
    """Drop the previous raw view (untimed), then run ``statements`` in one transaction
    on a connection opened beforehand; returns the time to COMMIT."""
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP MATERIALIZED VIEW IF EXISTS {RAW_VIEW}")
        connection.autocommit = False
        return common.timed_transaction(connection, statements)
    finally:
        connection.close()


def sync_force() -> float:
    from django_orm_views.sync import sync_views

    common.warm_up_django()
    elapsed, report = common.timed(lambda: sync_views(force=True))
    result = report["default"]
    assert result.applied, "sync_views(force=True) applied nothing"
    assert any(sql.startswith("REFRESH MATERIALIZED VIEW") for sql in result.statements)
    return float(elapsed)


def old_snapshot_count(database: common.Database, build: Callable[[], Any], relation: str) -> int:
    """Rows of ``relation`` seen by a REPEATABLE READ transaction whose snapshot was
    taken before ``build`` ran (the reader does not touch the view before)."""
    reader = database.connect(autocommit=False)
    try:
        reader.set_session(isolation_level="REPEATABLE READ")
        with reader.cursor() as cursor:
            cursor.execute("SELECT pg_current_snapshot()")  # takes the snapshot
            cursor.fetchone()
            build()
            cursor.execute(f"SELECT count(*) FROM {relation}")
            count = int(cursor.fetchone()[0])
        reader.rollback()
        return count
    finally:
        reader.close()


def fresh_count(database: common.Database, relation: str) -> int:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {relation}")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1_000_000, repeat=5)
    database = common.create_database("snapshot_build")
    try:
        run(database, args)
    finally:
        common.drop_database(database)


def run(database: common.Database, args: Any) -> None:
    spec = Spec(kind="snapshot", base_table="bench_snapshot_base")
    common.run_statements(
        database,
        [*base_table_statements(spec.base_table, args.rows), f'CREATE SCHEMA "{RAW_SCHEMA}"'],
    )
    common.configure_django(database, spec)
    common.migrate()
    from django.db import connections

    from django_orm_views.sync import plan_sync, sync_views

    env = common.environment(database)
    declared = common.declared_views()
    assert [name for name, view in declared.items() if view.is_materialized()] == [
        "bench_snapshotmv"
    ], declared
    select_sql = plan_sync(database="default").rendered["bench_snapshotmv"].select_sql
    print(
        f"1 materialized view of {args.rows:,} rows with a unique index; {args.repeat} repeats; "
        f"PostgreSQL {env['postgresql']}, {env['cpus']} CPUs, load {env['load_average_at_start']}"
    )
    print(f"SELECT: {select_sql}")
    sync_views()

    builds: dict[str, Callable[[], float]] = {
        "with_data": lambda: raw_build(database, raw_statements(select_sql, refresh=False)),
        "no_data_refresh": lambda: raw_build(database, raw_statements(select_sql, refresh=True)),
        "sync_force": sync_force,
    }
    relations = {
        "with_data": RAW_VIEW,
        "no_data_refresh": RAW_VIEW,
        "sync_force": DECLARED_VIEW,
    }

    # Untimed: what a snapshot older than each build reads in the new view; this pass
    # also warms the caches for the timed builds.
    old_counts: dict[str, int] = {}
    new_counts: dict[str, int] = {}
    for name in BUILDS:
        old_counts[name] = old_snapshot_count(database, builds[name], relations[name])
        new_counts[name] = fresh_count(database, relations[name])
        print(
            f"  {name:<15}: a REPEATABLE READ snapshot taken before the build counts "
            f"{old_counts[name]:,} rows; a new transaction counts {new_counts[name]:,}"
        )

    samples: dict[str, list[float]] = {name: [] for name in BUILDS}
    for repeat in range(args.repeat):
        # Rotate the order, so that no build always follows the same one.
        order = BUILDS[repeat % len(BUILDS) :] + BUILDS[: repeat % len(BUILDS)]
        for name in order:
            samples[name].append(builds[name]())
        print(
            f"  repeat {repeat + 1}: "
            + ", ".join(f"{name} {common.fmt_ms(samples[name][-1])}" for name in BUILDS)
        )
    connections.close_all()

    medians = {name: common.median(samples[name]) for name in BUILDS}
    floor = medians["with_data"]
    refresh_ratio = common.ratio(medians["no_data_refresh"], floor)
    sync_ratio = common.ratio(medians["sync_force"], floor)
    rows_ok = all(count == args.rows for count in new_counts.values())

    table = common.Table(
        f"{SCRIPT}: build of a {args.rows:,}-row materialized view with a unique index"
    )
    for name in BUILDS:
        table.add(
            BUILD_LABELS[name],
            common.fmt_ms(medians[name]),
            common.fmt_ratio(common.ratio(medians[name], floor)),
            f"an older REPEATABLE READ snapshot counts {old_counts[name]:,} rows",
        )
    table.print()

    print()
    common.summary(
        f"WITH NO DATA + REFRESH: {common.fmt_ms(medians['no_data_refresh'])} median = "
        f"{common.fmt_ratio(refresh_ratio)} the WITH DATA floor ({common.fmt_ms(floor)}) "
        f"(target <= {TARGET_RATIO}x: {common.verdict(refresh_ratio <= TARGET_RATIO)})"
    )
    common.summary(
        f"sync_views(force=True): {common.fmt_ms(medians['sync_force'])} median = "
        f"{common.fmt_ratio(sync_ratio)} the WITH DATA floor"
    )
    common.summary(
        f"older REPEATABLE READ snapshot on PostgreSQL {env['postgresql'].split()[0]} counts: "
        f"WITH DATA {old_counts['with_data']:,}, WITH NO DATA + REFRESH "
        f"{old_counts['no_data_refresh']:,}, sync_views {old_counts['sync_force']:,} "
        f"(of {args.rows:,}; every new transaction counts all: {common.verdict(rows_ok)})"
    )

    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {"rows": args.rows, "repeat": args.repeat, "select": select_sql},
            "environment": env,
            "figures": {
                "with_data_floor_ms": common.ms(floor),
                "no_data_refresh_ms": common.ms(medians["no_data_refresh"]),
                "no_data_refresh_vs_floor_ratio": refresh_ratio,
                "sync_force_ms": common.ms(medians["sync_force"]),
                "sync_force_vs_floor_ratio": sync_ratio,
                "old_snapshot_rows": old_counts,
                "new_transaction_rows": new_counts,
            },
            "samples_ms": {name: [common.ms(value) for value in samples[name]] for name in BUILDS},
            "targets": {"no_data_refresh_vs_floor_ratio_max": TARGET_RATIO},
        },
        args,
    )


if __name__ == "__main__":
    main()
