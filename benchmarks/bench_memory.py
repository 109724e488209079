"""Peak memory (max RSS) of ``manage.py sync_views`` for 200 views, against the floor: a
process that only sets up Django (same settings, same 200 view classes).

Each measured process runs under a small probe process that starts it, waits for it and
reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (so every figure is the peak of
exactly one process). Measured, ``--repeat`` times each:

- floor: Django set up (``settings.configure`` + ``django.setup()``, which imports the
  200 declarations), nothing else;
- ``sync_views`` into a database without the views schema (full sync);
- ``sync_views`` when the database is already in sync (no-op);
- ``sync_views --force`` (rebuild everything);
- for information, a bare ``python -c pass``.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import _common as common
from benchapp.catalog import Spec, base_table_statements

SCRIPT = "bench_memory"
CHILD = str(common.BENCH_DIR / "_rss_child.py")
PROBE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"status": status, "maxrss_kb": usage.ru_maxrss, "seconds": elapsed}))
"""

MODES = [
    ("python", "bare python -c pass", [sys.executable, "-c", "pass"]),
    ("setup", "floor: Django set up, 200 views declared", [sys.executable, CHILD, "setup"]),
    ("sync", "manage.py sync_views (full, empty schema)", [sys.executable, CHILD, "sync"]),
    ("noop", "manage.py sync_views (no-op, in sync)", [sys.executable, CHILD, "sync"]),
    ("force", "manage.py sync_views --force", [sys.executable, CHILD, "force"]),
]


def probe(command: list[str]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-c", PROBE, *command],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    outcome: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    if outcome["status"] != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {outcome['status']}:\n{output.stderr}")
    return outcome


def view_count(database: common.Database) -> int:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = "
                "c.relnamespace WHERE n.nspname = 'views' AND c.relkind IN ('v', 'm')"
            )
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def reset(database: common.Database) -> None:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            common.drop_view_schemas(cursor)
    finally:
        connection.close()


def main() -> None:
    args = common.parse_args(__doc__.split("\n\n")[0], rows=1000, repeat=5)
    database = common.create_database("memory")
    try:
        run(database, args)
    finally:
        common.drop_database(database)


def run(database: common.Database, args: Any) -> None:
    spec = Spec(kind="chains", views=200, chains=10, materialized=5)
    common.run_statements(database, base_table_statements(spec.base_table, args.rows))
    os.environ.update(database.to_environment())
    # The children set up Django themselves; this process only migrates the database.
    common.configure_django(database, spec)
    common.migrate()
    env = common.environment(database)
    print(
        f"{spec.views} views ({spec.materialized} materialized) over {args.rows:,} rows; "
        f"{args.repeat} runs of each process; PostgreSQL {env['postgresql']}, "
        f"{env['cpus']} CPUs, load {env['load_average_at_start']}"
    )

    outcomes: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in MODES}
    for repeat in range(args.repeat):
        for name, _, command in MODES:
            if name == "sync":
                reset(database)
            outcomes[name].append(probe(command))
            if name in ("sync", "noop", "force"):
                count = view_count(database)
                assert count == spec.views, f"{name}: {count} views in the schema"
        print(
            f"  run {repeat + 1}: "
            + ", ".join(
                f"{name} {outcomes[name][-1]['maxrss_kb'] / 1024:.1f} MB" for name, _, _ in MODES
            ),
            flush=True,
        )

    figures: dict[str, Any] = {}
    for name, _, _ in MODES:
        figures[name] = {
            "maxrss_mb": common.median([o["maxrss_kb"] for o in outcomes[name]]) / 1024,
            "seconds": common.median([o["seconds"] for o in outcomes[name]]),
        }
    floor = figures["setup"]["maxrss_mb"]
    table = common.Table(f"{SCRIPT}: peak RSS (max RSS of the process), {spec.views} views")
    for name, label, _ in MODES:
        figure = figures[name]
        delta = figure["maxrss_mb"] - floor
        note = f"process {figure['seconds'] * 1000:,.0f} ms"
        if name not in ("python", "setup"):
            note += f"; +{delta:.1f} MB over the floor"
        table.add(
            label,
            f"{figure['maxrss_mb']:.1f} MB",
            common.fmt_ratio(figure["maxrss_mb"] / floor),
            note,
        )
        figure["vs_floor_ratio"] = figure["maxrss_mb"] / floor
        figure["over_floor_mb"] = delta
    table.print()

    print()
    for name in ("sync", "noop", "force"):
        figure = figures[name]
        label = dict((mode, label) for mode, label, _ in MODES)[name]
        common.summary(
            f"peak RSS of {label}: {figure['maxrss_mb']:.1f} MB median vs {floor:.1f} MB for a "
            f"process that only sets up Django: {figure['vs_floor_ratio']:.2f}x "
            f"(+{figure['over_floor_mb']:.1f} MB)"
        )

    common.write_results(
        SCRIPT,
        {
            "script": SCRIPT,
            "parameters": {"views": spec.views, "rows": args.rows, "repeat": args.repeat},
            "environment": env,
            "figures": {"floor_setup_maxrss_mb": floor, **figures},
            "samples_maxrss_kb": {
                name: [o["maxrss_kb"] for o in items] for name, items in outcomes.items()
            },
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        args,
    )


if __name__ == "__main__":
    main()
