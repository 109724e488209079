"""The demo project's second database: settings derived from the first, created on demand.

The ``warehouse`` alias uses the same server and credentials as ``default`` with the
database name ``<default NAME>_warehouse`` (``WAREHOUSE_DATABASE_URL`` overrides it).
Test runners create ``test_<that name>`` themselves; for ``manage.py`` the database is
created on the server when the default one exists and this one does not yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

WAREHOUSE_SUFFIX = "_warehouse"


def derived_database(default: dict[str, Any], suffix: str = WAREHOUSE_SUFFIX) -> dict[str, Any]:
    """Settings of a second database next to ``default``, named ``<NAME><suffix>``."""
    settings = {**default, "NAME": f"{default['NAME']}{suffix}"}
    test = dict(default.get("TEST") or {})
    if test.get("NAME"):
        test["NAME"] = f"{test['NAME']}{suffix}"
    settings["TEST"] = test
    return settings


@contextlib.contextmanager
def _connect(settings: dict[str, Any]) -> Iterator[Any]:
    """A short autocommit connection with whichever driver is installed."""
    kwargs = {
        "dbname": settings["NAME"],
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": settings.get("PORT") or None,
        "connect_timeout": 5,
    }
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    try:
        import psycopg

        connection: Any = psycopg.connect(**kwargs, autocommit=True)
    except ImportError:
        import psycopg2

        connection = psycopg2.connect(**kwargs)
        connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def create_if_missing(default: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Create the database ``wanted`` on ``default``'s server when ``default`` exists and
    ``wanted`` does not. Returns whether it was created; never raises (a server that is
    down or a missing default database is for Django to report, with its own words)."""
    try:
        with _connect(default) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [wanted["NAME"]])
            if cursor.fetchone() is not None:
                return False
            quoted = '"' + str(wanted["NAME"]).replace('"', '""') + '"'
            cursor.execute(f"CREATE DATABASE {quoted}")
            return True
    except Exception:
        return False
