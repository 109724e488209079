"""Shared helpers of the benchmark scripts: database, Django setup, timing, output.

Each script creates a database of its own on the server named by ``DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), configures Django itself
(``settings.configure``) with the ``benchapp`` app, and drops the database at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
VIEWS_SCHEMA = "views"

if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))


# Database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    name: str
    host: str
    port: int
    user: str
    password: str

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "dbname": dbname or self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
        }
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def connect(self, *, autocommit: bool = True, dbname: str | None = None) -> Any:
        import psycopg2

        connection = psycopg2.connect(**self.connect_kwargs(dbname))
        connection.autocommit = autocommit
        return connection

    def django_settings(self) -> dict[str, Any]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def to_environment(self) -> dict[str, str]:
        return {"ORM_VIEWS_BENCH_DATABASE": json.dumps(self.__dict__)}

    @classmethod
    def from_environment(cls) -> Database:
        return cls(**json.loads(os.environ["ORM_VIEWS_BENCH_DATABASE"]))


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL


def _server() -> tuple[Database, str]:
    import dj_database_url

    parsed = dj_database_url.parse(server_url())
    maintenance = parsed.get("NAME") or "postgres"
    database = Database(
        name=maintenance,
        host=parsed.get("HOST") or "127.0.0.1",
        port=int(parsed.get("PORT") or 5432),
        user=parsed.get("USER") or "postgres",
        password=parsed.get("PASSWORD") or "",
    )
    return database, maintenance


def create_database(tag: str) -> Database:
    """A fresh database ``bench_<tag>`` on the benchmark server."""
    server, maintenance = _server()
    name = f"bench_{tag}"
    connection = server.connect(dbname=maintenance)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return Database(name, server.host, server.port, server.user, server.password)


def drop_database(database: Database) -> None:
    from django.conf import settings

    if settings.configured:
        from django.db import connections

        connections.close_all()
    server, maintenance = _server()
    connection = server.connect(dbname=maintenance)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    finally:
        connection.close()


def run_statements(database: Database, statements: Sequence[str]) -> None:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def timed_transaction(
    connection: Any, statements: Sequence[str], *, batched: bool = False
) -> float:
    """Run ``statements`` in one transaction on ``connection`` (opened beforehand, not in
    autocommit), one by one or as one string; returns the time to COMMIT, in seconds."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if batched:
            cursor.execute(";\n".join(statements))
        else:
            for statement in statements:
                cursor.execute(statement)
    connection.commit()
    return time.perf_counter() - started


def drop_view_schemas(cursor: Any, schema: str = VIEWS_SCHEMA) -> None:
    """Drop the views schema and any staging or old schema beside it."""
    cursor.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
        [schema, schema.replace("_", "\\_") + "\\_\\_%"],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# Django ---------------------------------------------------------------------------------


def configure_django(database: Database, spec: Any) -> None:
    """settings.configure() with contenttypes, auth, django_orm_views and benchapp,
    whose views come from ``spec`` (a ``benchapp.catalog.Spec``)."""
    os.environ.update(spec.to_environment())
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="orm-views-benchmarks",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DATABASES={"default": database.django_settings()},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_orm_views",
            "benchapp",
        ],
        ORM_VIEWS_GRANT_SELECT_TO=[],
    )
    django.setup()


def migrate() -> None:
    """Create the tables of the installed apps (as a deployment would before syncing)."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def declared_views() -> dict[str, Any]:
    from benchapp import postgres_views

    return postgres_views.VIEWS


@contextlib.contextmanager
def count_queries(alias: str = "default") -> Iterator[list[str]]:
    """Every statement Django's cursors execute on ``alias`` while the block runs."""
    from django.db import connections

    executed: list[str] = []

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    with connections[alias].execute_wrapper(wrapper):
        yield executed


@contextlib.contextmanager
def count_round_trips(alias: str = "default") -> Iterator[list[int]]:
    """Round trips of Django's psycopg (3) connection while the block runs, COMMITs
    included: every network exchange goes through ``Connection.wait``. Yields
    ``[count]``; ``[-1]`` with another driver."""
    from django.db import connections

    wrapper = connections[alias]
    wrapper.ensure_connection()
    raw = wrapper.connection
    counter = [0]
    if not (hasattr(raw, "wait") and hasattr(raw, "pgconn")):
        counter[0] = -1
        yield counter
        return
    original = raw.wait

    def wait(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(*args, **kwargs)

    raw.wait = wait
    try:
        yield counter
    finally:
        del raw.wait


def reset_views(database: Database) -> None:
    """Start from a database without any views schema (untimed)."""
    from django.db import connections

    connections.close_all()
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            drop_view_schemas(cursor)
    finally:
        connection.close()
    warm_up_django()


def warm_up_django(alias: str = "default") -> None:
    """Open Django's connection, so that no timing includes connecting."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")


# Measuring -----------------------------------------------------------------------------


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(value: float, floor: float) -> float:
    return value / floor if floor else float("inf")


def ms(seconds: float) -> float:
    return seconds * 1000.0


def fmt_ms(seconds: float) -> str:
    value = ms(seconds)
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.2f}x"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


@dataclass
class Table:
    """A short text table: label, value, ratio against the floor, note."""

    title: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, label: str, value: str, ratio_text: str = "", note: str = "") -> None:
        self.rows.append((label, value, ratio_text, note))

    def print(self) -> None:
        header = ("figure", "median", "ratio", "note")
        widths = [
            max(len(header[column]), *(len(row[column]) for row in self.rows))
            for column in range(4)
        ]
        print(f"\n{self.title}")
        line = "  ".join(text.ljust(widths[i]) for i, text in enumerate(header))
        print(line.rstrip())
        print("  ".join("-" * width for width in widths))
        for row in self.rows:
            cells = [
                row[0].ljust(widths[0]),
                row[1].rjust(widths[1]),
                row[2].rjust(widths[2]),
                row[3],
            ]
            print("  ".join(cells).rstrip())


def parse_args(
    description: str, *, rows: int | None, repeat: int, extra: Callable[[Any], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if rows is not None:
        parser.add_argument(
            "--rows", type=int, default=rows, help=f"rows of the base table (default {rows:,})"
        )
    parser.add_argument(
        "--repeat", type=int, default=repeat, help=f"repeats of each measure (default {repeat})"
    )
    parser.add_argument(
        "--no-results",
        action="store_true",
        help=f"do not write {RESULTS_DIR.relative_to(REPO_DIR)}/<script>.json",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


def environment(database: Database) -> dict[str, Any]:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server_version = cursor.fetchone()[0]
    finally:
        connection.close()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "django_orm_views"],
                cwd=REPO_DIR,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    import django

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "package_has_uncommitted_changes": dirty,
        "postgresql": server_version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def write_results(script: str, payload: dict[str, Any], args: argparse.Namespace) -> None:
    if getattr(args, "no_results", False):
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{script}.json"
    payload = {**payload}
    payload.setdefault("environment", {})["load_average_at_end"] = [
        round(value, 2) for value in os.getloadavg()
    ]
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"\nwrote {path.relative_to(REPO_DIR)}")


def summary(line: str) -> None:
    print(f"SUMMARY {line}")
