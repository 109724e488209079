"""No-op sync and full sync of 200 views (10 dependency chains, 5 materialized roots)
over a small base table, against floors measured in the same run.

Figures:
- no-op sync: ``sync_views()`` when the database already matches the code, in-process
  time and database round trips (statements seen by ``connection.execute_wrapper``);
  ratio to one catalog read through psycopg2 and to a full sync.
- full sync: ``sync_views()`` (default strategy, swap) into a database without the views
  schema, against the floor: the same DDL (``sync_views(dry_run=True, force=True,
  strategy="recreate")`` statements) run directly through psycopg2 in one transaction.

Run: ``.venv/bin/python benchmarks/bench_sync_200.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import _common as common
from benchapp.catalog import Spec, base_table_statements

SCRIPT = "bench_sync_200"


def extra_arguments(parser: Any) -> None:
    parser.add_argument("--views", type=int, default=200, help="number of views (default 200)")
    parser.add_argument("--chains", type=int, default=10, help="dependency chains (default 10)")
    parser.add_argument(
        "--materialized", type=int, default=5, help="materialized chain roots (default 5)"
    )


def floor_full_sync(database: common.Database, statements: list[str], driver: str) -> float:
    """Run ``statements`` in one transaction on a connection opened beforehand."""
    if driver.startswith("psycopg2"):
        connection = database.connect(autocommit=False)
    else:
        import psycopg

        connection = psycopg.connect(**database.connect_kwargs(), autocommit=False)
    try:
        return common.timed_transaction(connection, statements, batched=driver.endswith("batched"))
    finally:
        connection.close()


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1000, repeat=5, extra=extra_arguments)
    spec = Spec(kind="chains", views=args.views, chains=args.chains, materialized=args.materialized)
    database = common.create_database("sync_200")
    try:
        run(database, spec, args)
    finally:
        common.drop_database(database)


def run(database: common.Database, spec: Spec, args: Any) -> None:
    common.run_statements(database, base_table_statements(spec.base_table, args.rows))
    common.configure_django(database, spec)
    common.migrate()
    from django.db import connections

    from django_orm_views.introspection import CATALOG_QUERY, catalog_parameters
    from django_orm_views.plan import desired_state
    from django_orm_views.sync import plan_sync, sync_views

    env = common.environment(database)
    declared = common.declared_views()
    materialized = sum(1 for view in declared.values() if view.is_materialized())
    print(
        f"{len(declared)} views ({materialized} materialized) in {spec.chains} chains over "
        f"{args.rows:,} rows; {args.repeat} repeats; PostgreSQL {env['postgresql']}, "
        f"{env['cpus']} CPUs, load {env['load_average_at_start']}"
    )

    # Cold: the first sync of the process (imports, parser warm-up), for information.
    common.reset_views(database)
    cold, _ = common.timed(lambda: sync_views())

    # Full sync into a database without the views schema (default strategy: swap), and
    # its floor: the same DDL straight through the driver, in one transaction. The
    # measures alternate, so that a change in the machine's load touches both alike.
    statements = sync_views(dry_run=True, force=True, strategy="recreate")["default"].statements
    full_times: list[float] = []
    full_queries: list[int] = []
    full_trips: list[int] = []
    floors: dict[str, list[float]] = {"psycopg2": [], "psycopg": [], "psycopg2-batched": []}
    for _ in range(args.repeat):
        common.reset_views(database)
        with common.count_queries() as executed, common.count_round_trips() as trips:
            elapsed, report = common.timed(lambda: sync_views())
        assert report["default"].applied, "the full sync applied nothing"
        full_times.append(elapsed)
        full_queries.append(len(executed))
        full_trips.append(trips[0])
        for driver, times in floors.items():
            common.reset_views(database)
            times.append(floor_full_sync(database, statements, driver))
    full_statements = len(report["default"].statements)
    common.reset_views(database)
    sync_views()

    # Forced re-syncs of an up-to-date schema, for information.
    forced: dict[str, list[float]] = {"swap": [], "recreate": []}
    for _ in range(args.repeat):
        for strategy, times in forced.items():
            common.warm_up_django()
            elapsed, _ = common.timed(partial(sync_views, force=True, strategy=strategy))
            times.append(elapsed)

    # No-op: the database already matches the code.
    sync_views()
    noop_times: list[float] = []
    noop_queries: list[int] = []
    noop_trips: list[int] = []
    noop_statements: list[str] = []
    for _ in range(args.repeat):
        with common.count_queries() as executed, common.count_round_trips() as trips:
            elapsed, report = common.timed(lambda: sync_views())
        assert not report["default"].applied, "the no-op sync applied something"
        noop_times.append(elapsed)
        noop_queries.append(len(executed))
        noop_trips.append(trips[0])
        noop_statements = list(executed)
    # Where the no-op time goes: rendering the declarations, and planning as a whole.
    desired_times = [common.timed(lambda: desired_state("default"))[0] for _ in range(args.repeat)]
    plan_times = [
        common.timed(lambda: plan_sync(database="default"))[0] for _ in range(args.repeat)
    ]
    # Floor of a no-op: the one catalog read it needs, through psycopg2.
    raw = database.connect()
    catalog_times = []
    with raw.cursor() as cursor:
        for _ in range(args.repeat):
            started = time.perf_counter()
            # The parameters read_catalog() passes for the schema "views".
            cursor.execute(CATALOG_QUERY, catalog_parameters("views"))
            cursor.fetchall()
            catalog_times.append(time.perf_counter() - started)
    raw.close()
    connections.close_all()

    full = common.median(full_times)
    floor = common.median(floors["psycopg2"])
    floor3 = common.median(floors["psycopg"])
    batched = common.median(floors["psycopg2-batched"])
    noop = common.median(noop_times)
    catalog = common.median(catalog_times)
    noop_round_trips = int(common.median(noop_queries))
    noop_driver_trips = int(common.median(noop_trips))

    table = common.Table(f"{SCRIPT}: {len(declared)} views, {args.rows:,} base rows")
    table.add(
        "floor: DDL via psycopg2, 1 transaction",
        common.fmt_ms(floor),
        "1.00x",
        f"{len(statements)} statements",
    )
    table.add(
        "floor: DDL via psycopg (3), 1 transaction",
        common.fmt_ms(floor3),
        common.fmt_ratio(common.ratio(floor3, floor)),
    )
    table.add(
        "DDL via psycopg2 as one string, 1 transaction",
        common.fmt_ms(batched),
        common.fmt_ratio(common.ratio(batched, floor)),
        "1 round trip, for information",
    )
    table.add(
        "full sync, no views schema yet (swap)",
        common.fmt_ms(full),
        common.fmt_ratio(common.ratio(full, floor)),
        f"{full_statements} statements, {int(common.median(full_queries))} queries seen, "
        f"{int(common.median(full_trips))} driver round trips",
    )
    table.add(
        "first sync of the process (cold)",
        common.fmt_ms(cold),
        common.fmt_ratio(common.ratio(cold, floor)),
        "1 run",
    )
    table.add(
        "forced re-sync, swap",
        common.fmt_ms(common.median(forced["swap"])),
        common.fmt_ratio(common.ratio(common.median(forced["swap"]), floor)),
    )
    table.add(
        "forced re-sync, recreate",
        common.fmt_ms(common.median(forced["recreate"])),
        common.fmt_ratio(common.ratio(common.median(forced["recreate"]), floor)),
    )
    table.print()

    table = common.Table(f"{SCRIPT}: no-op sync ({len(declared)} views, already in sync)")
    table.add("floor: one catalog read via psycopg2", common.fmt_ms(catalog), "1.00x")
    table.add(
        "no-op sync_views()",
        common.fmt_ms(noop),
        common.fmt_ratio(common.ratio(noop, catalog)),
        f"{noop_round_trips} queries seen, {noop_driver_trips} driver round trips; "
        f"{100 * noop / full:.1f}% of a full sync",
    )
    table.add(
        "  of which plan_sync()",
        common.fmt_ms(common.median(plan_times)),
        common.fmt_ratio(common.ratio(common.median(plan_times), catalog)),
    )
    table.add(
        "  of which desired_state() (render, no I/O)",
        common.fmt_ms(common.median(desired_times)),
        common.fmt_ratio(common.ratio(common.median(desired_times), catalog)),
    )
    table.print()
    print("\nno-op statements:")
    for sql in noop_statements:
        print("  " + " ".join(sql.split())[:110])

    print()
    common.summary(
        f"no-op sync of {len(declared)} views: {common.fmt_ms(noop)} median "
        f"(target <= 50 ms: {common.verdict(common.ms(noop) <= 50)}); "
        f"{noop_round_trips} round trips seen by execute_wrapper, {noop_driver_trips} at the "
        f"driver (target <= 3: {common.verdict(max(noop_round_trips, noop_driver_trips) <= 3)}); "
        f"{common.fmt_ratio(common.ratio(noop, full))} of a full sync"
    )
    full_ratio = common.ratio(full, floor)
    common.summary(
        f"full sync of {len(declared)} views: {common.fmt_ms(full)} median vs floor "
        f"{common.fmt_ms(floor)} (psycopg2, same DDL, 1 transaction): "
        f"{common.fmt_ratio(full_ratio)} (target <= 1.3x: {common.verdict(full_ratio <= 1.3)}); "
        f"{common.fmt_ratio(common.ratio(full, floor3))} of the same DDL through psycopg (3), "
        "the driver Django uses when both are installed"
    )

    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {
                "views": len(declared),
                "materialized": materialized,
                "chains": spec.chains,
                "rows": args.rows,
                "repeat": args.repeat,
            },
            "environment": env,
            "figures": {
                "noop_sync_ms": common.ms(noop),
                "noop_round_trips": noop_round_trips,
                "noop_driver_round_trips": noop_driver_trips,
                "noop_plan_sync_ms": common.ms(common.median(plan_times)),
                "noop_desired_state_ms": common.ms(common.median(desired_times)),
                "noop_floor_catalog_read_ms": common.ms(catalog),
                "noop_vs_floor_ratio": common.ratio(noop, catalog),
                "noop_vs_full_sync_ratio": common.ratio(noop, full),
                "full_sync_ms": common.ms(full),
                "full_sync_statements": full_statements,
                "full_sync_queries_seen": int(common.median(full_queries)),
                "full_sync_driver_round_trips": int(common.median(full_trips)),
                "full_sync_floor_psycopg2_ms": common.ms(floor),
                "full_sync_floor_psycopg_ms": common.ms(floor3),
                "ddl_one_string_psycopg2_ms": common.ms(batched),
                "full_sync_floor_statements": len(statements),
                "full_sync_vs_floor_ratio": full_ratio,
                "first_sync_cold_ms": common.ms(cold),
                "forced_swap_ms": common.ms(common.median(forced["swap"])),
                "forced_recreate_ms": common.ms(common.median(forced["recreate"])),
            },
            "samples_ms": {
                "noop_sync": [common.ms(value) for value in noop_times],
                "full_sync": [common.ms(value) for value in full_times],
                "floor_psycopg2": [common.ms(value) for value in floors["psycopg2"]],
                "floor_psycopg": [common.ms(value) for value in floors["psycopg"]],
                "ddl_one_string_psycopg2": [
                    common.ms(value) for value in floors["psycopg2-batched"]
                ],
            },
            "targets": {
                "noop_sync_ms_max": 50,
                "noop_round_trips_max": 3,
                "full_sync_vs_floor_ratio_max": 1.3,
            },
        },
        args,
    )


if __name__ == "__main__":
    main()
