"""Reader stall: the longest query of a reader while a sync rebuilds the views it reads.

A reader process (its own connection, autocommit) selects one row by id, in a loop, from
a plain view over a materialized view of ``--rows`` rows (unique index on ``id``). While
it runs, the main process calls ``sync_views(force=True)``, which rebuilds both views:

- strategy ``swap``: build in a staging schema, swap the schemas in one short transaction;
- strategy ``recreate``: drop and recreate the schema in one transaction, so a reader
  waits for the whole rebuild;
- (for information) ``swap`` without ``force`` after the plain view changed: the
  materialized view is kept where it is stored, and the new generation points to it.

Per sync: the reader's longest query that overlapped the sync (the stall), its median
query during the sync, and its errors. The floor is the reader's median query latency
while no sync runs, measured just before each sync.

Run: ``.venv/bin/python benchmarks/bench_reader_stall.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from typing import Any

import _common as common
from _reader import reader_loop
from benchapp.catalog import Spec, base_table_statements, change_view

SCRIPT = "bench_reader_stall"
READER_SQL = 'SELECT id, doubled FROM "views"."bench_stallreader" WHERE id = %s'
IDLE_SECONDS = 0.5
TAIL_SECONDS = 0.3

SCENARIOS = [
    ("swap", "swap", True),
    ("recreate", "recreate", True),
    ("swap-keep", "swap", False),
]
SCENARIO_LABELS = {
    "swap": "swap, force (materialized view rebuilt in staging)",
    "recreate": "recreate, force (rebuilt in one transaction)",
    "swap-keep": "swap, plain view changed (materialized view kept)",
}


def measure(
    database: common.Database, rows: int, strategy: str, force: bool, before_sync: Any
) -> dict[str, Any]:
    from django_orm_views.exceptions import SyncError
    from django_orm_views.sync import sync_views

    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    process = context.Process(
        target=reader_loop,
        args=(database.connect_kwargs(), READER_SQL, rows, ready, stop, results),
        daemon=True,
    )
    process.start()
    samples = None
    sync_error = None
    try:
        if not ready.wait(60):
            raise RuntimeError("the reader process did not start")
        before_sync()
        common.warm_up_django()
        time.sleep(IDLE_SECONDS)
        sync_started = time.monotonic()
        try:
            report = sync_views(strategy=strategy, force=force)
            assert report["default"].applied
        except SyncError as error:
            # Counted and reported: a sync that fails leaves the live views unchanged.
            sync_error = str(error)
        sync_ended = time.monotonic()
        time.sleep(TAIL_SECONDS)
    finally:
        stop.set()
        try:
            if ready.is_set():
                samples = results.get(timeout=120)
        finally:
            process.join(10)
            if process.is_alive():
                process.terminate()
    assert samples is not None

    idle = [duration for started, duration, _ in samples if started + duration < sync_started]
    during = [
        (duration, error)
        for started, duration, error in samples
        if started <= sync_ended and started + duration >= sync_started
    ]
    errors = [error for _, _, error in samples if error is not None]
    return {
        "sync_s": sync_ended - sync_started,
        "idle_median_s": common.median(idle),
        "max_s": max((duration for duration, _ in during), default=0.0),
        "median_s": common.median([duration for duration, _ in during]),
        "queries_during_sync": len(during),
        "errors": len(errors),
        "error_messages": sorted(Counter(errors).items()),
        "sync_failed": sync_error is not None,
        "sync_error": sync_error,
    }


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1_000_000, repeat=3)
    database = common.create_database("reader_stall")
    try:
        run(database, args)
    finally:
        common.drop_database(database)


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's repeats: medians, the worst, and every error counted by message."""
    messages: Counter[str] = Counter()
    sync_messages: Counter[str] = Counter()
    for outcome in outcomes:
        messages.update(dict(outcome["error_messages"]))
        if outcome["sync_error"]:
            sync_messages[outcome["sync_error"]] += 1
    return {
        "max_ms": common.ms(common.median([o["max_s"] for o in outcomes])),
        "worst_max_ms": common.ms(max(o["max_s"] for o in outcomes)),
        "median_ms": common.ms(common.median([o["median_s"] for o in outcomes])),
        "idle_median_ms": common.ms(common.median([o["idle_median_s"] for o in outcomes])),
        "sync_ms": common.ms(common.median([o["sync_s"] for o in outcomes])),
        "errors": sum(o["errors"] for o in outcomes),
        "error_messages": dict(messages),
        "sync_failures": sum(1 for o in outcomes if o["sync_failed"]),
        "sync_error_messages": dict(sync_messages),
        "queries_during_sync": int(common.median([o["queries_during_sync"] for o in outcomes])),
    }


def run(database: common.Database, args: Any) -> None:
    spec = Spec(kind="stall", base_table="bench_stall_base")
    common.run_statements(database, base_table_statements(spec.base_table, args.rows))
    common.configure_django(database, spec)
    common.migrate()
    from django.db import connections

    from django_orm_views.sync import sync_views

    env = common.environment(database)
    declared = common.declared_views()
    reader_view = declared["bench_stallreader"]
    print(
        f"reader on a plain view over a materialized view of {args.rows:,} rows; "
        f"{args.repeat} syncs per strategy; PostgreSQL {env['postgresql']}, {env['cpus']} CPUs, "
        f"load {env['load_average_at_start']}"
    )
    sync_views()

    revision = 0

    def bump_reader_view() -> None:
        nonlocal revision
        revision += 1
        change_view(reader_view, revision)

    measured: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in SCENARIOS}
    for repeat in range(args.repeat):
        for name, strategy, force in SCENARIOS:
            before = bump_reader_view if not force else (lambda: None)
            outcome = measure(database, args.rows, strategy, force, before)
            measured[name].append(outcome)
            print(
                f"  repeat {repeat + 1} {name:<9}: sync {common.fmt_ms(outcome['sync_s'])}, "
                f"reader max {common.fmt_ms(outcome['max_s'])}, median "
                f"{common.fmt_ms(outcome['median_s'])} (idle {common.fmt_ms(outcome['idle_median_s'])}), "
                f"{outcome['queries_during_sync']} queries, {outcome['errors']} errors"
                + (", SYNC FAILED" if outcome["sync_failed"] else "")
            )
    connections.close_all()

    figures = {name: summarise(measured[name]) for name, _, _ in SCENARIOS}
    floor_ms = common.median(
        [o["idle_median_s"] for outcomes in measured.values() for o in outcomes]
    )
    floor_ms = common.ms(floor_ms)
    swap, recreate = figures["swap"], figures["recreate"]
    swap_vs_recreate = swap["max_ms"] / recreate["max_ms"] if recreate["max_ms"] else float("inf")

    table = common.Table(
        f"{SCRIPT}: reader latency during sync_views(), {args.rows:,}-row materialized view"
    )
    table.add("floor: reader query, no sync running", f"{floor_ms:.2f} ms", "1.00x")
    for name, _, _ in SCENARIOS:
        figure = figures[name]
        label = SCENARIO_LABELS[name]
        table.add(
            f"{label}: max",
            common.fmt_ms(figure["max_ms"] / 1000),
            common.fmt_ratio(figure["max_ms"] / floor_ms),
            f"worst {common.fmt_ms(figure['worst_max_ms'] / 1000)}; sync "
            f"{common.fmt_ms(figure['sync_ms'] / 1000)}; {figure['errors']} reader errors; "
            f"{figure['sync_failures']} failed syncs",
        )
        table.add(
            f"{label}: median",
            common.fmt_ms(figure["median_ms"] / 1000),
            common.fmt_ratio(figure["median_ms"] / floor_ms),
            f"{figure['queries_during_sync']} queries during the sync",
        )
    table.print()
    for name, figure in figures.items():
        for kind, key in (
            ("reader error", "error_messages"),
            ("failed sync", "sync_error_messages"),
        ):
            for message, count in figure[key].items():
                print(f"  {name}: {kind} x{count}:")
                for line in message.splitlines():
                    print(f"    {line}")

    print()
    common.summary(
        f"reader stall, swap: max {common.fmt_ms(swap['max_ms'] / 1000)} median of "
        f"{args.repeat} (worst {common.fmt_ms(swap['worst_max_ms'] / 1000)}; target <= 50 ms: "
        f"{common.verdict(swap['max_ms'] <= 50)}); median {common.fmt_ms(swap['median_ms'] / 1000)}; "
        f"{swap['errors']} reader errors (target 0: {common.verdict(swap['errors'] == 0)}); "
        f"{swap['sync_failures']} failed syncs"
    )
    common.summary(
        f"reader stall, recreate: max {common.fmt_ms(recreate['max_ms'] / 1000)} (the rebuild: "
        f"sync {common.fmt_ms(recreate['sync_ms'] / 1000)}); median "
        f"{common.fmt_ms(recreate['median_ms'] / 1000)}; {recreate['errors']} reader errors; "
        f"{recreate['sync_failures']} failed syncs (of {args.repeat})"
    )
    common.summary(
        f"reader stall ratio swap/recreate: {swap_vs_recreate:.4f} "
        f"({common.fmt_ratio(1 / swap_vs_recreate) if swap_vs_recreate else 'inf'} shorter); "
        f"swap max vs idle reader query: {common.fmt_ratio(swap['max_ms'] / floor_ms)}"
    )
    keep = figures["swap-keep"]
    common.summary(
        f"reader stall, swap keeping the materialized view: max "
        f"{common.fmt_ms(keep['max_ms'] / 1000)} (worst {common.fmt_ms(keep['worst_max_ms'] / 1000)}); "
        f"{keep['errors']} reader errors; {keep['sync_failures']} failed syncs"
    )

    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {"rows": args.rows, "repeat": args.repeat, "reader_sql": READER_SQL},
            "environment": env,
            "figures": {
                "floor_idle_reader_median_ms": floor_ms,
                "swap_vs_recreate_max_ratio": swap_vs_recreate,
                **{name: figure for name, figure in figures.items()},
            },
            "samples": {
                name: [
                    {
                        key: value
                        for key, value in outcome.items()
                        if key not in ("error_messages", "sync_error")
                    }
                    for outcome in outcomes
                ]
                for name, outcomes in measured.items()
            },
            "targets": {"swap_max_ms_max": 50, "swap_errors": 0},
        },
        args,
    )


if __name__ == "__main__":
    main()
