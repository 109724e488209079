"""The support matrix: Django 4.2, 5.1 and 5.2 x psycopg2 and psycopg 3 x PostgreSQL servers.

    make test-matrix                       # every session, every server
    nox -s "tests(django='5.2', driver='psycopg')"
    ORM_VIEWS_MATRIX_SERVERS=machine nox   # one server only

Each session installs one Django and the driver Django is to use: psycopg2 sessions have
no psycopg 3, so Django falls back to psycopg2. psycopg sessions also get psycopg2-binary,
only because tests/test_sync_faults.py connects its own readers with it; Django picks
psycopg 3 whenever it is installed, and tests/test_drivers.py checks the driver in use
(ORM_VIEWS_EXPECTED_DRIVER) and that the package imports neither driver itself. The
test suite then runs once for each server in ORM_VIEWS_MATRIX_SERVERS (default:
"embedded machine"):

- ``embedded``: DATABASE_URL unset, so test_project starts a private pgserver whose data
  lives in .nox/pgdata (not the development server in .pgdata);
- ``machine``: the cluster at ORM_VIEWS_MATRIX_DATABASE_URL (default
  postgresql://postgres@127.0.0.1:5432/postgres), with a database name of the session's
  own (``orm_views_<django>_<driver>``), so that sessions and other test runs on the same
  server never share test databases.

Virtualenvs are reused between runs (``--reuse-venv yes``); ``-N`` rebuilds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

ROOT = Path(__file__).resolve().parent
DJANGO_VERSIONS = ["4.2", "5.1", "5.2"]
DRIVERS = {"psycopg2": "psycopg2-binary>=2.9", "psycopg": "psycopg[binary]>=3.1"}
# Test-only clients a session needs besides its driver (see the docstring).
TEST_CLIENTS = {"psycopg2": [], "psycopg": ["psycopg2-binary>=2.9"]}
SERVERS = ("embedded", "machine")
TEST_REQUIREMENTS = [
    "pytest>=8",
    "pytest-django>=4.8",
    "factory-boy>=3.3",
    "coverage[toml]>=7.10.3",
]
EMBEDDED_REQUIREMENT = "pgserver>=0.1.4"
DEFAULT_MACHINE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def servers() -> list[str]:
    chosen = os.environ.get("ORM_VIEWS_MATRIX_SERVERS", " ".join(SERVERS)).split()
    unknown = sorted(set(chosen) - set(SERVERS))
    if unknown:
        raise SystemExit(
            f"ORM_VIEWS_MATRIX_SERVERS names unknown servers: {', '.join(unknown)}. "
            f"Use any of: {', '.join(SERVERS)}."
        )
    return chosen


def machine_url(database: str) -> str:
    url = urlsplit(os.environ.get("ORM_VIEWS_MATRIX_DATABASE_URL", DEFAULT_MACHINE_URL))
    return urlunsplit(url._replace(path=f"/{database}"))


@nox.session
@nox.parametrize("driver", list(DRIVERS))
@nox.parametrize("django", DJANGO_VERSIONS)
def tests(session: nox.Session, django: str, driver: str) -> None:
    chosen = servers()
    requirements = [f"Django~={django}.0", DRIVERS[driver], *TEST_CLIENTS[driver]]
    requirements += TEST_REQUIREMENTS
    if "embedded" in chosen:
        requirements.append(EMBEDDED_REQUIREMENT)
    session.install("-e", str(ROOT), *requirements)
    session.run("python", "-m", "django", "--version")
    database = f"orm_views_{django.replace('.', '')}_{driver}"
    for server in chosen:
        env = {
            "ORM_VIEWS_EXPECTED_DRIVER": driver,
            "DJANGO_SETTINGS_MODULE": "test_project.settings",
            "WAREHOUSE_DATABASE_URL": "",
        }
        if server == "machine":
            env["DATABASE_URL"] = machine_url(database)
        else:
            env["DATABASE_URL"] = ""
            env["ORM_VIEWS_PGDATA"] = str(ROOT / ".nox" / "pgdata")
        session.log(f"Django {django}, {driver}, {server} PostgreSQL")
        session.run(
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *session.posargs,
            env=env,
        )
