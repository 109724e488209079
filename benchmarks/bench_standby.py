"""Readers on a hot standby while the primary syncs 200 views, with
``ORM_VIEWS_KEEP_PREVIOUS_SECONDS = 0`` (the replaced schema dropped at once) and ``3600``
(kept as the previous generation), side by side.

A hot standby replays the primary's locks. When the replay needs an ACCESS EXCLUSIVE lock
on a relation a standby query holds (the drop of the replaced schema, the move of an
unchanged materialized view), it waits ``max_standby_streaming_delay`` and then cancels
the query ("canceling statement due to conflict with recovery").

The script starts its own primary and hot standby (``test_project/replication.py``:
the embedded PostgreSQL's programs, ``max_standby_streaming_delay = 2s``,
``hot_standby_feedback = on``), or uses the pair ``DATABASE_URL`` and
``STANDBY_DATABASE_URL`` name; it creates the database ``bench_standby`` on it with the
``chains`` workload of ``bench_sync_200.py`` (200 views in 10 chains, 5 materialized
roots) over ``--rows`` rows, and drops it at the end. For each setting:

- readers: reader processes on the standby select one row by id in a loop, from a plain
  view at the end of a chain and from a materialized view, while the primary runs
  ``--syncs`` syncs that each change one view and ``--refreshes`` ``refresh_views``;
  their errors and longest query, against the floor of their median query with nothing
  running, and the replay lag after each command, measured in the same run (the target:
  longest query <= 50 ms + the longest lag);
- long query: ``SELECT count(*) FROM views.<view>, pg_sleep(--long-seconds)`` on the
  standby, started before a sync, on the view the sync changes, on a plain view and on
  a materialized view it does not change: completed, or cancelled after how long.

Then, when this package's ``sync_views`` has a ``--rollback`` option (what
``manage.py sync_views --help`` prints), ``sync_views --rollback`` of the 200 views on
the primary: its duration against a sync's, and the errors and longest query of readers
on the primary while it runs.

``--repeat N`` repeats the readers' measure (the run with the longest query is shown) and
the rollback (medians). ``--quick``: 5 syncs, 2 refreshes, a 10-second long query.

Run: ``.venv/bin/python benchmarks/bench_standby.py [--quick] [--long-seconds N]
[--syncs N] [--refreshes N] [--views N] [--rows N] [--repeat N] [--no-results]``.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import _common as common
import dj_database_url
import psycopg2
from _reader import Sample, reader_loop
from benchapp.catalog import Spec, base_table_statements, chain_lengths, change_view, view_name

# The pair comes from test_project, beside the package in the repository, which is not on
# sys.path when a script runs. First on it, so that the checkout's package is the one
# measured, as everywhere else in the repository.
if str(common.REPO_DIR) not in sys.path:
    sys.path.insert(0, str(common.REPO_DIR))

from test_project.replication import (
    DEFAULT_MAX_STANDBY_STREAMING_DELAY,
    Node,
    ReplicationPair,
    pair_from_environment,
    start_pair,
)

SCRIPT = "bench_standby"
DATABASE = "bench_standby"
KEEP_VALUES = (0, 3600)
KEEP_LABELS = {0: "keep 0 (drop at once)", 3600: "keep 3600 (previous generation kept)"}
IDLE_SECONDS = 1.0
TAIL_SECONDS = 0.3
TARGET_MS = 50.0
DEFAULTS = {"syncs": 20, "refreshes": 5, "long_seconds": 60.0}
QUICK = {"syncs": 5, "refreshes": 2, "long_seconds": 10.0}


def extra_arguments(parser: Any) -> None:
    parser.add_argument("--views", type=int, default=200, help="number of views (default 200)")
    parser.add_argument(
        "--syncs",
        type=int,
        default=DEFAULTS["syncs"],
        help=f"syncs with a change while readers read (default {DEFAULTS['syncs']})",
    )
    parser.add_argument(
        "--refreshes",
        type=int,
        default=DEFAULTS["refreshes"],
        help=f"refresh_views among them (default {DEFAULTS['refreshes']})",
    )
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=DEFAULTS["long_seconds"],
        help=f"seconds of the long standby query (default {DEFAULTS['long_seconds']:g})",
    )
    parser.add_argument(
        "--streaming-delay",
        type=float,
        default=DEFAULT_MAX_STANDBY_STREAMING_DELAY,
        help="the standby's max_standby_streaming_delay in seconds, for a pair started here "
        f"(default {DEFAULT_MAX_STANDBY_STREAMING_DELAY:g})",
    )
    parser.add_argument(
        "--no-hot-standby-feedback",
        action="store_true",
        help="start the standby with hot_standby_feedback off: the primary's vacuum may then "
        "cancel standby queries too, whatever the package does",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run: {QUICK['syncs']} syncs, {QUICK['refreshes']} refreshes, a "
        f"{QUICK['long_seconds']:g}-second long query (unless given otherwise)",
    )


def database_on(node: Node) -> common.Database:
    """``common.Database`` settings of ``node``'s database (its socket directory as host)."""
    parsed = dj_database_url.parse(node.url)
    return common.Database(
        name=str(parsed["NAME"]),
        host=str(parsed.get("HOST") or "127.0.0.1"),
        port=int(parsed.get("PORT") or 5432),
        user=str(parsed.get("USER") or "postgres"),
        password=str(parsed.get("PASSWORD") or ""),
    )


def has_rollback_option() -> bool:
    """Whether ``manage.py sync_views --help`` offers ``--rollback``."""
    from django.core.management import load_command_class

    command = load_command_class("django_orm_views", "sync_views")
    return "--rollback" in command.create_parser("manage.py", "sync_views").format_help()


def set_keep_previous(seconds: int) -> None:
    from django.conf import settings

    settings.ORM_VIEWS_KEEP_PREVIOUS_SECONDS = seconds


@dataclass
class Workload:
    """The views the measures read and change."""

    changed: str  # a plain view no other view reads: each sync changes it
    plain: str  # a plain view at the end of another chain, never changed
    materialized: str  # a materialized chain root, never changed
    revision: int = 0

    def change_and_sync(self) -> float:
        """Change ``changed`` and sync; returns the sync's duration."""
        from django_orm_views.sync import sync_views

        self.revision += 1
        change_view(common.declared_views()[self.changed], self.revision)
        common.warm_up_django()
        elapsed, report = common.timed(lambda: sync_views(database="default"))
        assert report["default"].applied, "the sync applied nothing"
        return elapsed


def pick_views(spec: Spec) -> Workload:
    lengths = chain_lengths(spec)
    if len(lengths) < 3 or spec.materialized < 2:
        raise SystemExit("the workload needs at least 3 chains and 2 materialized roots")
    return Workload(
        changed=view_name(0, lengths[0] - 1),
        plain=view_name(2, lengths[2] - 1),
        materialized=view_name(1, 0),
    )


# Readers ---------------------------------------------------------------------------------


class Readers:
    """Reader processes (benchmarks/_reader.py) on one server, one for each labelled SQL."""

    def __init__(self, database: common.Database, sqls: dict[str, str], max_id: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.labels = list(sqls)
        self.ready = [context.Event() for _ in sqls]
        self.stop = context.Event()
        self.results: list[Any] = [context.Queue() for _ in sqls]
        self.processes = [
            context.Process(
                target=reader_loop,
                args=(database.connect_kwargs(), sql, max_id, ready, self.stop, results),
                daemon=True,
            )
            for sql, ready, results in zip(sqls.values(), self.ready, self.results, strict=True)
        ]

    def __enter__(self) -> Readers:
        for process in self.processes:
            process.start()
        for ready in self.ready:
            if not ready.wait(60):
                raise RuntimeError("a reader process did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()

    def samples(self) -> dict[str, list[Sample]]:
        """Each reader's samples, by label, once they were told to stop."""
        self.stop.set()
        return {
            label: results.get(timeout=120)
            for label, results in zip(self.labels, self.results, strict=True)
        }


def overlapping(samples: list[Sample], windows: list[tuple[float, float]]) -> list[Sample]:
    return [
        sample
        for sample in samples
        if any(sample[0] <= end and sample[0] + sample[1] >= start for start, end in windows)
    ]


def reader_figures(
    samples: dict[str, list[Sample]], windows: list[tuple[float, float]], idle_before: float
) -> dict[str, Any]:
    """For each reader, the queries that overlapped ``windows``: count, longest, median,
    errors counted by their first line (with the first one's whole text as an example),
    and the floor: its median successful query before ``idle_before``, nothing running.
    Then the totals over the readers."""
    readers: dict[str, dict[str, Any]] = {}
    for label, own in samples.items():
        during = overlapping(own, windows)
        errors = [error for _, _, error in during if error is not None]
        examples: dict[str, str] = {}
        for error in errors:
            examples.setdefault(error.splitlines()[0], error)
        idle = [d for started, d, error in own if started + d < idle_before and error is None]
        readers[label] = {
            "queries": len(during),
            "max_s": max((duration for _, duration, _ in during), default=0.0),
            "median_s": common.median([duration for _, duration, _ in during]),
            "floor_s": common.median(idle),
            "errors": len(errors),
            "error_messages": dict(Counter(error.splitlines()[0] for error in errors)),
            "error_examples": examples,
        }
    return {
        "readers": readers,
        "errors": sum(figure["errors"] for figure in readers.values()),
        "max_s": max((figure["max_s"] for figure in readers.values()), default=0.0),
    }


def measure_readers(
    pair: ReplicationPair, workload: Workload, args: Any, max_id: int
) -> dict[str, Any]:
    """Readers on the standby while the primary runs syncs with changes and refreshes."""
    from django.core.management import call_command

    sqls = {
        f"plain view {workload.plain}": f'SELECT id FROM "views"."{workload.plain}" WHERE id = %s',
        f"materialized view {workload.materialized}": (
            f'SELECT id FROM "views"."{workload.materialized}" WHERE id = %s'
        ),
    }
    refresh_every = max(1, args.syncs // max(1, args.refreshes))
    sync_times: list[float] = []
    lags: list[float] = []
    with Readers(database_on(pair.standby), sqls, max_id) as readers:
        time.sleep(IDLE_SECONDS)
        started = time.monotonic()
        refreshes = 0
        for sync in range(args.syncs):
            sync_times.append(workload.change_and_sync())
            lags.append(pair.wait_for_replay())
            if refreshes < args.refreshes and (sync + 1) % refresh_every == 0:
                call_command("refresh_views", database="default", verbosity=0)
                refreshes += 1
                lags.append(pair.wait_for_replay())
        ended = time.monotonic()
        time.sleep(TAIL_SECONDS)
        samples = readers.samples()
    return {
        **reader_figures(samples, [(started, ended)], started),
        "syncs": args.syncs,
        "refreshes": refreshes,
        "sync_median_s": common.median(sync_times),
        "max_lag_s": max(lags, default=0.0),
        "median_lag_s": common.median(lags),
    }


# Long queries ----------------------------------------------------------------------------


class LongQuery(threading.Thread):
    """``SELECT count(*) FROM views.<view>, pg_sleep(seconds)`` on the standby."""

    application_name = "bench_standby_long_query"

    def __init__(self, node: Node, view: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.node, self.view, self.seconds = node, view, seconds
        self.elapsed = 0.0
        self.error: str | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            connection = self.node.connect(application_name=self.application_name)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f'SELECT count(*) FROM "views"."{self.view}", pg_sleep(%s)', [self.seconds]
                    )
                    cursor.fetchall()
            finally:
                connection.close()
        except psycopg2.Error as error:
            self.error = f"{error.pgcode}: {str(error).strip().splitlines()[0]}"
        finally:
            self.elapsed = time.monotonic() - started

    def outcome(self) -> str:
        if self.error is None:
            return f"completed in {self.elapsed:.1f}s"
        return f"cancelled after {self.elapsed:.1f}s ({self.error})"


def measure_long_queries(
    pair: ReplicationPair, workload: Workload, seconds: float
) -> dict[str, Any]:
    """Long queries on the standby, started before a sync that changes one of their views."""
    targets = {
        "changed view": workload.changed,
        "unchanged plain view": workload.plain,
        "unchanged materialized view": workload.materialized,
    }
    queries = {label: LongQuery(pair.standby, view, seconds) for label, view in targets.items()}
    for query in queries.values():
        query.start()
    # Sleeping means planned and locked: the sync comes after their locks.
    deadline = time.monotonic() + 30
    while pair.standby.query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event = 'PgSleep'",
        [LongQuery.application_name],
    )[0][0] < len(queries):
        if time.monotonic() > deadline or any(not query.is_alive() for query in queries.values()):
            raise RuntimeError("the long queries did not start on the standby")
        time.sleep(0.05)
    sync_s = workload.change_and_sync()
    lag = pair.wait_for_replay(timeout=seconds + 60)
    for query in queries.values():
        query.join(seconds + 60)
    return {
        "sync_s": sync_s,
        "lag_s": lag,
        "queries": {
            label: {
                "view": query.view,
                "completed": query.error is None,
                "seconds": query.elapsed,
                "error": query.error,
                "outcome": query.outcome(),
            }
            for label, query in queries.items()
        },
    }


# Rollback ----------------------------------------------------------------------------------


def measure_rollback(
    pair: ReplicationPair, workload: Workload, repeat: int, max_id: int
) -> dict[str, Any]:
    """``sync_views --rollback`` right after a sync with a change, readers on the primary."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    set_keep_previous(3600)
    sqls = {
        f"changed view {workload.changed}": (
            f'SELECT id FROM "views"."{workload.changed}" WHERE id = %s'
        ),
        f"materialized view {workload.materialized}": (
            f'SELECT id FROM "views"."{workload.materialized}" WHERE id = %s'
        ),
    }
    rollbacks: list[float] = []
    syncs: list[float] = []
    windows: list[tuple[float, float]] = []
    failures: list[str] = []
    with Readers(database_on(pair.primary), sqls, max_id) as readers:
        time.sleep(IDLE_SECONDS)
        floor_before = time.monotonic()
        for _ in range(repeat):
            syncs.append(workload.change_and_sync())
            started = time.monotonic()
            try:
                call_command("sync_views", "--rollback", database="default", verbosity=0)
            except CommandError as error:
                failures.append(str(error))
            ended = time.monotonic()
            rollbacks.append(ended - started)
            windows.append((started, ended))
        time.sleep(TAIL_SECONDS)
        samples = readers.samples()
    return {
        "rollback_median_s": common.median(rollbacks),
        "sync_median_s": common.median(syncs),
        **reader_figures(samples, windows, floor_before),
        "failures": failures,
    }


# Report -----------------------------------------------------------------------------------


def print_readers(readers: dict[int, dict[str, Any]]) -> None:
    table = common.Table(f"{SCRIPT}: standby readers while the primary syncs and refreshes")
    for keep, figure in readers.items():
        for label, reader in figure["readers"].items():
            table.add(
                f"{KEEP_LABELS[keep]}, {label}: query, nothing running (floor)",
                common.fmt_ms(reader["floor_s"]),
                "1.00x",
            )
            table.add(
                f"{KEEP_LABELS[keep]}, {label}: longest query",
                common.fmt_ms(reader["max_s"]),
                common.fmt_ratio(common.ratio(reader["max_s"], reader["floor_s"])),
                f"{reader['errors']} errors in {reader['queries']} queries",
            )
        table.add(
            f"{KEEP_LABELS[keep]}: replay lag after a command",
            common.fmt_ms(figure["median_lag_s"]),
            "",
            f"longest {common.fmt_ms(figure['max_lag_s'])}; {figure['syncs']} syncs (median "
            f"{common.fmt_ms(figure['sync_median_s'])}), {figure['refreshes']} refreshes",
        )
    table.print()
    for keep, figure in readers.items():
        print_errors(KEEP_LABELS[keep], figure["readers"])


def print_errors(prefix: str, readers: dict[str, dict[str, Any]]) -> None:
    """Each reader's errors: first line and count, then the rest of the first one's text."""
    for label, reader in readers.items():
        for message, count in reader["error_messages"].items():
            print(f"  {prefix}, {label}: error x{count}: {message}")
            for line in reader["error_examples"][message].splitlines()[1:]:
                print(f"      {line}")


def print_long_queries(long_queries: dict[int, dict[str, Any]], seconds: float) -> None:
    print(f"\n{SCRIPT}: a {seconds:g}-second standby query started before a sync")
    for keep, figure in long_queries.items():
        print(
            f"  {KEEP_LABELS[keep]} (sync {common.fmt_ms(figure['sync_s'])}, replay lag "
            f"{common.fmt_ms(figure['lag_s'])}):"
        )
        for label, query in figure["queries"].items():
            print(f"    {label} ({query['view']}): {query['outcome']}")


def print_rollback(rollback: dict[str, Any] | None) -> None:
    print(f"\n{SCRIPT}: sync_views --rollback on the primary")
    if rollback is None:
        print("  not available (this package's sync_views has no --rollback option)")
        return
    print(
        f"  rollback {common.fmt_ms(rollback['rollback_median_s'])} (median), "
        f"{common.fmt_ratio(common.ratio(rollback['rollback_median_s'], rollback['sync_median_s']))} "
        f"a sync with one change ({common.fmt_ms(rollback['sync_median_s'])})"
    )
    for label, reader in rollback["readers"].items():
        print(
            f"  primary reader, {label}: longest {common.fmt_ms(reader['max_s'])} "
            f"({common.fmt_ratio(common.ratio(reader['max_s'], reader['floor_s']))} its idle "
            f"query, {common.fmt_ms(reader['floor_s'])}); {reader['errors']} errors"
        )
    print_errors("rollback", rollback["readers"])
    for failure in rollback["failures"]:
        print(f"  FAILED: {failure}")


def summarise(
    readers: dict[int, dict[str, Any]],
    long_queries: dict[int, dict[str, Any]],
    rollback: dict[str, Any] | None,
    seconds: float,
) -> None:
    print()
    for keep in KEEP_VALUES:
        figure = readers[keep]
        limit_ms = TARGET_MS + common.ms(figure["max_lag_s"])
        common.summary(
            f"standby readers, {KEEP_LABELS[keep]}: {figure['errors']} errors (target 0: "
            f"{common.verdict(figure['errors'] == 0)}); longest query "
            f"{common.fmt_ms(figure['max_s'])} (target <= 50 ms + longest replay lag "
            f"{common.fmt_ms(figure['max_lag_s'])}: "
            f"{common.verdict(common.ms(figure['max_s']) <= limit_ms)})"
        )
    for keep in KEEP_VALUES:
        queries = long_queries[keep]["queries"]
        completed = sum(1 for query in queries.values() if query["completed"])
        common.summary(
            f"{seconds:g}-second standby query across a sync, {KEEP_LABELS[keep]}: "
            + "; ".join(f"{label} {query['outcome']}" for label, query in queries.items())
            + f" ({completed} of {len(queries)} completed)"
        )
    if rollback is None:
        common.summary("sync_views --rollback: not available")
    else:
        common.summary(
            f"sync_views --rollback: {common.fmt_ms(rollback['rollback_median_s'])} "
            f"({common.fmt_ratio(common.ratio(rollback['rollback_median_s'], rollback['sync_median_s']))} "
            f"a sync); {rollback['errors']} primary reader errors, longest query "
            f"{common.fmt_ms(rollback['max_s'])} (target 0 errors: "
            f"{common.verdict(rollback['errors'] == 0 and not rollback['failures'])})"
        )


# Main -------------------------------------------------------------------------------------


def run(pair: ReplicationPair, spec: Spec, args: Any) -> None:
    database = database_on(pair.primary)
    common.run_statements(database, base_table_statements(spec.base_table, args.rows))
    common.configure_django(database, spec)
    common.migrate()
    from django.db import connections

    from django_orm_views.sync import sync_views

    env = common.environment(database)
    rollback_available = has_rollback_option()
    print(pair.describe())
    print(
        f"{spec.views} views ({spec.materialized} materialized) over {args.rows:,} rows; "
        f"{args.syncs} syncs and {args.refreshes} refreshes; a {args.long_seconds:g}-second "
        f"long query; sync_views --rollback {'available' if rollback_available else 'not available'}; "
        f"{env['cpus']} CPUs, load {env['load_average_at_start']}"
    )
    workload = pick_views(spec)
    sync_views(database="default")
    pair.wait_for_replay()

    readers: dict[int, dict[str, Any]] = {}
    for keep in KEEP_VALUES:
        set_keep_previous(keep)
        runs = [measure_readers(pair, workload, args, args.rows) for _ in range(args.repeat)]
        readers[keep] = max(runs, key=lambda figure: figure["max_s"])
        print(
            f"  readers, {KEEP_LABELS[keep]}: longest {common.fmt_ms(readers[keep]['max_s'])}, "
            f"{readers[keep]['errors']} errors"
        )
    long_queries: dict[int, dict[str, Any]] = {}
    for keep in KEEP_VALUES:
        set_keep_previous(keep)
        long_queries[keep] = measure_long_queries(pair, workload, args.long_seconds)
        print(f"  long query, {KEEP_LABELS[keep]}: done")
    rollback = (
        measure_rollback(pair, workload, args.repeat, args.rows) if rollback_available else None
    )
    connections.close_all()

    print_readers(readers)
    print_long_queries(long_queries, args.long_seconds)
    print_rollback(rollback)
    summarise(readers, long_queries, rollback, args.long_seconds)
    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {
                "views": spec.views,
                "rows": args.rows,
                "repeat": args.repeat,
                "syncs": args.syncs,
                "refreshes": args.refreshes,
                "long_seconds": args.long_seconds,
                "max_standby_streaming_delay_s": pair.max_standby_streaming_delay,
                "hot_standby_feedback": pair.hot_standby_feedback,
            },
            "environment": env,
            "figures": {
                "readers": {str(keep): figure for keep, figure in readers.items()},
                "long_queries": {str(keep): figure for keep, figure in long_queries.items()},
                "rollback": rollback,
            },
            "targets": {"standby_reader_errors": 0, "standby_longest_query_ms": "50 + lag"},
        },
        args,
    )


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1000, repeat=1, extra=extra_arguments)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == DEFAULTS[name]:
                setattr(args, name, value)
    if args.syncs < 1 or args.refreshes < 0 or args.long_seconds <= 0:
        raise SystemExit("--syncs must be at least 1, --refreshes 0 or more, --long-seconds > 0")
    spec = Spec(kind="chains", views=args.views, chains=10, materialized=5, base_table="bench_base")
    pair = pair_from_environment() or start_pair(
        max_standby_streaming_delay=args.streaming_delay,
        hot_standby_feedback=not args.no_hot_standby_feedback,
    )
    try:
        on_database = pair.create_database(DATABASE)
        try:
            run(on_database, spec, args)
        finally:
            from django.conf import settings

            if settings.configured:
                from django.db import connections

                connections.close_all()
            on_database.drop_database()
    finally:
        pair.stop()


if __name__ == "__main__":
    main()
