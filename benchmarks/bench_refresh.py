"""Refresh stall: the longest query of a reader while a materialized view is refreshed.

A reader process (its own connection, autocommit) selects one row by id, in a loop, from
a materialized view of ``--rows`` rows (unique index on ``id``). Before each refresh 1% of
the base table's rows change. While the reader runs, the main process refreshes the view:

- ``concurrently``: ``refresh_materialized_views(concurrently=True)``, i.e. ``REFRESH
  MATERIALIZED VIEW CONCURRENTLY``;
- ``swap``: ``refresh_materialized_views(concurrently=False)``, the fallback for views
  without a unique index: rebuilt beside the live view, swapped in by one short
  transaction;
- ``blocking`` (the floor to beat, measured in the same run): a plain ``REFRESH
  MATERIALIZED VIEW``, which holds an ACCESS EXCLUSIVE lock for its whole duration.

Per refresh: the reader's longest query that overlapped the refresh, and its errors.
Figures are medians over ``--repeat`` refreshes, with the ratio against the blocking
refresh (how much shorter the worst stall is) and against the reader's median query
while nothing runs.

Self-contained: needs only the package, Django and psycopg2. Creates the database
``bench_refresh`` on the server of ``DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it at the end.

Run: ``.venv/bin/python benchmarks/bench_refresh.py [--rows N] [--repeat N] [--no-results]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import fmt_ms, fmt_ratio

SCRIPT = "bench_refresh"
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_NAME = "bench_refresh"
VIEW_NAME = "bench_refreshed"
READER_SQL = f'SELECT id, grp, doubled FROM "views"."{VIEW_NAME}" WHERE id = %s'
IDLE_SECONDS = 0.5
TAIL_SECONDS = 0.3
MODES = ("concurrently", "swap", "blocking")
MODE_LABELS = {
    "concurrently": "concurrently (unique index)",
    "swap": "swap (rebuilt beside, swapped in)",
    "blocking": "blocking REFRESH (floor to beat)",
}

# Reader process -------------------------------------------------------------------------


def reader_loop(
    connect_kwargs: dict[str, Any], max_id: int, ready: Any, stop: Any, results: Any
) -> None:
    """Query one row by id in a loop; record (start, duration, error) of every query."""
    import psycopg2

    connection = psycopg2.connect(**connect_kwargs)
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("SET statement_timeout = '300s'")
    rng = random.Random(20240601)
    for _ in range(200):  # warm the connection and the caches
        cursor.execute(READER_SQL, [rng.randint(1, max_id)])
        cursor.fetchall()
    samples: list[tuple[float, float, str | None]] = []
    ready.set()
    while not stop.is_set():
        started = time.monotonic()
        error = None
        try:
            cursor.execute(READER_SQL, [rng.randint(1, max_id)])
            cursor.fetchall()
        except psycopg2.Error as exc:
            error = f"{type(exc).__name__}: {str(exc).strip()}"
            if connection.closed:
                connection = psycopg2.connect(**connect_kwargs)
                connection.autocommit = True
                cursor = connection.cursor()
        samples.append((started, time.monotonic() - started, error))
    connection.close()
    results.put(samples)


# Database and Django --------------------------------------------------------------------


def server_settings() -> dict[str, Any]:
    import dj_database_url

    parsed = dj_database_url.parse(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    return {
        "host": parsed.get("HOST") or "127.0.0.1",
        "port": int(parsed.get("PORT") or 5432),
        "user": parsed.get("USER") or "postgres",
        "password": parsed.get("PASSWORD") or "",
        "maintenance": parsed.get("NAME") or "postgres",
    }


def connect_kwargs(server: dict[str, Any], dbname: str) -> dict[str, Any]:
    kwargs = {"dbname": dbname, "host": server["host"], "port": server["port"]}
    kwargs["user"] = server["user"]
    if server["password"]:
        kwargs["password"] = server["password"]
    return kwargs


def execute(server: dict[str, Any], dbname: str, *statements: str) -> None:
    import psycopg2

    connection = psycopg2.connect(**connect_kwargs(server, dbname))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def configure_django(server: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="orm-views-benchmarks",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": DATABASE_NAME,
                "USER": server["user"],
                "PASSWORD": server["password"],
                "HOST": server["host"],
                "PORT": str(server["port"]),
            }
        },
        INSTALLED_APPS=["django_orm_views"],
        ORM_VIEWS_GRANT_SELECT_TO=[],
    )
    django.setup()


def declare_view() -> type[Any]:
    """The measured view, declared the way an app's postgres_views module would."""
    from django_orm_views import PostgresMaterialisedViewMixin, PostgresViewFromSQL

    return type(
        "Refreshed",
        (PostgresMaterialisedViewMixin, PostgresViewFromSQL),
        {
            "__module__": "bench_refresh_views",
            "prefix": "bench",
            "pk_field": "id",
            "sql": "SELECT id, grp, val * 2 AS doubled FROM public.bench_refresh_base",
        },
    )


# Measuring ------------------------------------------------------------------------------


def refresh(mode: str, view: type[Any]) -> None:
    from django.db import connection

    from django_orm_views import refresh_materialized_views
    from django_orm_views.introspection import live_location

    if mode == "blocking":
        # Where the materialized view is stored: views.<name> only points to it.
        stored_in, _ = live_location(connection, "views", VIEW_NAME)
        with connection.cursor() as cursor:
            cursor.execute(f'REFRESH MATERIALIZED VIEW "{stored_in}"."{VIEW_NAME}"')
        return
    (result,) = refresh_materialized_views([view], concurrently=mode == "concurrently")
    assert result.mode.value == mode, result


def change_some_rows(round_number: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE public.bench_refresh_base SET val = val + 1 WHERE id %% 100 = %s",
            [round_number % 100],
        )
        cursor.execute("SELECT 1")  # keep the connection warm for the timed call


def measure(server: dict[str, Any], rows: int, mode: str, view: type[Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    process = context.Process(
        target=reader_loop,
        args=(connect_kwargs(server, DATABASE_NAME), rows, ready, stop, results),
    )
    process.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the reader process did not start")
        time.sleep(IDLE_SECONDS)
        refresh_started = time.monotonic()
        refresh(mode, view)
        refresh_ended = time.monotonic()
        time.sleep(TAIL_SECONDS)
    finally:
        stop.set()
    samples = results.get(timeout=120)
    process.join(30)
    idle = [duration for started, duration, _ in samples if started + duration < refresh_started]
    during = [
        (duration, error)
        for started, duration, error in samples
        if started <= refresh_ended and started + duration >= refresh_started
    ]
    errors = [error for _, _, error in samples if error is not None]
    return {
        "refresh_s": refresh_ended - refresh_started,
        "idle_median_s": median(idle),
        "max_s": max((duration for duration, _ in during), default=0.0),
        "queries_during_refresh": len(during),
        "errors": len(errors),
        "error_messages": sorted(Counter(errors).items()),
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def environment(server: dict[str, Any]) -> dict[str, Any]:
    import django
    import psycopg2

    connection = psycopg2.connect(**connect_kwargs(server, DATABASE_NAME))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    finally:
        connection.close()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "postgresql": version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's repeats: medians, the worst, and every error counted by message."""
    messages: Counter[str] = Counter()
    for outcome in outcomes:
        messages.update(dict(outcome["error_messages"]))
    return {
        "max_ms": 1000 * median([o["max_s"] for o in outcomes]),
        "worst_max_ms": 1000 * max(o["max_s"] for o in outcomes),
        "refresh_ms": 1000 * median([o["refresh_s"] for o in outcomes]),
        "errors": sum(o["errors"] for o in outcomes),
        "error_messages": dict(messages),
    }


def run(server: dict[str, Any], args: argparse.Namespace) -> None:
    execute(
        server,
        DATABASE_NAME,
        "CREATE TABLE public.bench_refresh_base (id integer PRIMARY KEY, grp integer, val integer)",
        "INSERT INTO public.bench_refresh_base SELECT g, g % 1000, g FROM "
        f"generate_series(1, {args.rows}) AS g",
        "VACUUM ANALYZE public.bench_refresh_base",
    )
    configure_django(server)
    from django.core.management import call_command
    from django.db import connections

    from django_orm_views import sync_views

    call_command("migrate", verbosity=0, interactive=False)
    view = declare_view()
    env = environment(server)
    print(
        f"reader on a materialized view of {args.rows:,} rows (unique index on id); "
        f"{args.repeat} refreshes per mode; PostgreSQL {env['postgresql']}, {env['cpus']} CPUs, "
        f"load {env['load_average_at_start']}"
    )
    sync_views()

    measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    round_number = 0
    for repeat in range(args.repeat):
        for mode in MODES:
            round_number += 1
            change_some_rows(round_number)
            outcome = measure(server, args.rows, mode, view)
            measured[mode].append(outcome)
            print(
                f"  repeat {repeat + 1} {mode:<12}: refresh {fmt_ms(outcome['refresh_s'])}, "
                f"reader max {fmt_ms(outcome['max_s'])} (idle median "
                f"{fmt_ms(outcome['idle_median_s'])}), {outcome['queries_during_refresh']} "
                f"queries, {outcome['errors']} errors"
            )
    connections.close_all()

    figures = {mode: summarise(outcomes) for mode, outcomes in measured.items()}
    floor_ms = 1000 * median([o["idle_median_s"] for runs in measured.values() for o in runs])
    blocking_ms = figures["blocking"]["max_ms"]

    print(f"\n{SCRIPT}: longest reader query during a refresh, {args.rows:,}-row view")
    header = ("figure", "median", "vs blocking", "vs idle", "note")
    lines = [("reader query, nothing running", fmt_ms(floor_ms / 1000), "", "1.00x", "")]
    for mode in MODES:
        figure = figures[mode]
        lines.append(
            (
                f"{MODE_LABELS[mode]}: max",
                fmt_ms(figure["max_ms"] / 1000),
                fmt_ratio(figure["max_ms"] / blocking_ms) if blocking_ms else "",
                fmt_ratio(figure["max_ms"] / floor_ms) if floor_ms else "",
                f"worst {fmt_ms(figure['worst_max_ms'] / 1000)}; refresh "
                f"{fmt_ms(figure['refresh_ms'] / 1000)}; {figure['errors']} errors",
            )
        )
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]
    print("  ".join(text.ljust(width) for text, width in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * width for width in widths))
    for row in lines:
        cells = [
            row[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(row[1:4], widths[1:4], strict=True)),
            row[4],
        ]
        print("  ".join(cells).rstrip())
    for mode, figure in figures.items():
        for message, count in figure["error_messages"].items():
            print(f"  {mode}: reader error x{count}: {message}")

    print()
    for mode in ("concurrently", "swap"):
        figure = figures[mode]
        print(
            f"SUMMARY refresh stall, {mode}: max {fmt_ms(figure['max_ms'] / 1000)} median of "
            f"{args.repeat} (worst {fmt_ms(figure['worst_max_ms'] / 1000)}; target <= 50 ms: "
            f"{'met' if figure['worst_max_ms'] <= 50 else 'NOT met'}); "
            f"{fmt_ratio(figure['max_ms'] / blocking_ms)} of a blocking REFRESH "
            f"({fmt_ms(blocking_ms / 1000)}); {figure['errors']} reader errors"
        )

    if not args.no_results:
        RESULTS_DIR.mkdir(exist_ok=True)
        env["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        payload = {
            "script": SCRIPT,
            "parameters": {"rows": args.rows, "repeat": args.repeat},
            "environment": env,
            "figures": {"floor_idle_reader_median_ms": floor_ms, **figures},
            "samples": measured,
        }
        path = RESULTS_DIR / f"{SCRIPT}.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {path.relative_to(REPO_DIR)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="refreshes per mode (default 3)")
    parser.add_argument(
        "--no-results",
        action="store_true",
        help="do not write benchmarks/results/bench_refresh.json",
    )
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    server = server_settings()
    execute(
        server,
        server["maintenance"],
        f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)',
        f'CREATE DATABASE "{DATABASE_NAME}"',
    )
    try:
        run(server, args)
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        execute(
            server, server["maintenance"], f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)'
        )


if __name__ == "__main__":
    main()
