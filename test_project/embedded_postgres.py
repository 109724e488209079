"""An embedded PostgreSQL server for the demo and the tests.

When ``DATABASE_URL`` is not set, the project starts a private PostgreSQL (from the
``pgserver`` package) whose data lives in ``<repository>/.pgdata`` and which listens
only on a unix socket inside that directory. The URL is then exported in the
environment so that every child process (``manage.py`` subprocesses started by the
tests, for instance) connects to the same server instead of starting its own.
The server stops when the process that started it exits.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "ORM_VIEWS_PGDATA"
DEFAULT_DATA_DIR = REPOSITORY_ROOT / ".pgdata"

# sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS; keep clear of both.
MAX_SOCKET_PATH_BYTES = 100
SOCKET_FILE_NAME = ".s.PGSQL.5432"

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

# Kept so the server object (and the atexit hook that stops it) lives as long as we do.
_server: PostgresServer | None = None


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
    # pgserver keeps a lock file in the user's runtime directory and platformdirs
    # warns on import when XDG_RUNTIME_DIR is unset (containers, CI). Point it at a
    # private directory of ours instead, before pgserver is imported.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime_dir = Path(tempfile.gettempdir()) / f"django-orm-views-runtime-{os.getuid()}"
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)


def start_server(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server and return its DATABASE_URL."""
    global _server
    data_dir = choose_data_dir(data_dir or requested_data_dir())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _ensure_runtime_dir()
    try:
        from pgserver.postgres_server import get_server
    except ImportError as error:
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed. "
            "Set DATABASE_URL=postgresql://user@host:port/dbname, or install the "
            "'embedded' extra: pip install 'django-orm-views[embedded]'."
        ) from error

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
