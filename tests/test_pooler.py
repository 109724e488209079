"""Syncs, refreshes and readers through a transaction-mode pooler (issue 9, point 11).

Hosted PostgreSQL offerings often put pgbouncer with ``pool_mode = transaction`` in front
of the server: each transaction of a client may run on a different server connection,
and a server connection serves many clients one transaction after another. A lock or a
setting that outlives its transaction then belongs to whichever client comes next. The
syncs here run in ``manage.py`` subprocesses whose DATABASE_URL goes through a real
pgbouncer (Debian's package, started on a port of its own with fewer server connections
than there are clients, so that they really share them); the readers go through it too
and check, on every round, that their server connection carries nothing left by a sync,
and they must keep reading while syncs wait for the sync lock.

What the test process asserts about the server (locks, schemas, backends) it reads on its
own connection, straight from the server, never through the pooler.

Django picks psycopg 3 when it is installed. Its backend binds parameters client-side and
turns prepared statements off (``prepare_threshold`` None), which pgbouncer 1.18 does not
support in transaction mode; ``test_syncs_through_the_pooler_prepare_no_statement`` keeps
it that way.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest
from django.db import connections

from django_orm_views.conf import schema_name
from django_orm_views.sync import sync_lock

from .test_sync_faults import (
    READER_QUERIES,
    SHOP_RELATIONS,
    SYNC,
    Reader,
    Syncs,
    advisory_locks,
    live_state,
    ok,
    read_every_view,
    wait_for,
)
from .utils import (
    REPOSITORY,
    fetch,
    leftovers,
    manage_py_env,
    relations_in,
)

PGBOUNCER = Path("/usr/sbin/pgbouncer")

# Server connections pgbouncer opens for one database and user: fewer than the clients
# that run at once, so that a server connection serves several of them in turn.
POOL_SIZE = 3
CONCURRENT_SYNCS = 8

# A forced sync of test_project's views takes a few seconds on a busy two-core machine.
NEXT_SYNC_SECONDS = 20

# Seconds a sync has, once connected to the pooler, to reach the point where it waits for
# the sync lock (it reads the catalog and renders the views first).
WAITING_SECONDS = 3

# pgbouncer refuses to run as root: when the tests run as root, it runs as the owner of
# the server's socket directory, else as the first of these users that exists.
UNPRIVILEGED_USERS = ("postgres", "nobody")

# Every round of a reader, on whichever server connection the pooler gives it: no
# advisory lock held by that connection (a reader holds none, and a transaction-level
# lock ends with its transaction: one held now was left behind by a session), and none
# of the settings a sync changes differs from its default (a sync sets them for its own
# transaction only).
NO_STATE_LEFT_BEHIND = (
    "SELECT NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid()) AND (SELECT bool_and(setting = reset_val) FROM pg_settings "
    "WHERE name IN ('lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout'))"
)

# A reader must not set anything for its session either (the next client of its server
# connection would get it): its statement timeout lasts for the query's own transaction.
POOLED_READER_QUERIES = [
    *(f"SELECT set_config('statement_timeout', '20s', true); {sql}" for sql in READER_QUERIES),
    NO_STATE_LEFT_BEHIND,
]


# The pooler -----------------------------------------------------------------------------


@dataclass
class Pooler:
    """A pgbouncer in transaction mode in front of the test server."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    user: str
    password: str

    def url(self) -> str:
        """DATABASE_URL of the test database through the pooler."""
        password = f":{quote(self.password, safe='')}" if self.password else ""
        name = quote(connections["default"].settings_dict["NAME"], safe="")
        return f"postgresql://{quote(self.user, safe='')}{password}@127.0.0.1:{self.port}/{name}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What a subprocess needs in its environment to go through the pooler."""
        return {"DATABASE_URL": self.url(), **(extra or {})}

    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def console(self) -> Any:
        """A connection to pgbouncer's admin console."""
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer", user=self.user
        )
        connection.autocommit = True
        return connection

    def client_names(self) -> list[str]:
        """application_name of each client of the test database."""
        connection = self.console()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW CLIENTS")
                columns = [column[0] for column in cursor.description]
                clients = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()
        name = connections["default"].settings_dict["NAME"]
        return [client["application_name"] for client in clients if client["database"] == name]

    def server_connections(self) -> int:
        """Server connections pgbouncer holds."""
        connection = self.console()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW SERVERS")
                return len(cursor.fetchall())
        finally:
            connection.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unprivileged_user(server_host: str) -> str:
    """Who pgbouncer runs as when we are root: the owner of the server's socket
    directory (the embedded server's is private to it), else a system user."""
    if server_host.startswith("/"):
        owner = os.stat(server_host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    pytest.fail(f"no unprivileged user ({', '.join(UNPRIVILEGED_USERS)}) to run pgbouncer as")


def pgbouncer_config(port: int, server_host: str, server_port: int, directory: Path) -> str:
    return "\n".join(
        [
            "[databases]",
            f"* = host={server_host} port={server_port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "pool_mode = transaction",
            "auth_type = trust",
            f"auth_file = {directory / 'users.txt'}",
            f"admin_users = {connections['default'].settings_dict['USER']}",
            f"default_pool_size = {POOL_SIZE}",
            "max_client_conn = 100",
            "ignore_startup_parameters = extra_float_digits,options",
            "",
        ]
    )


def start_pgbouncer(directory: Path) -> Pooler:
    connection = connections["default"]
    connection.ensure_connection()
    info = connection.connection.info
    server_host, server_port = info.host, int(info.port)
    settings = connection.settings_dict
    user, password = settings["USER"] or "postgres", settings["PASSWORD"] or ""
    port = free_port()
    (directory / "pgbouncer.ini").write_text(
        pgbouncer_config(port, server_host, server_port, directory)
    )
    # With auth_type = trust the password is never asked of a client; pgbouncer uses it
    # to log in to the server when the server asks for one.
    quoted_password = password.replace('"', '""')
    (directory / "users.txt").write_text(f'"{user}" "{quoted_password}"\n')
    command = [str(PGBOUNCER)]
    if os.geteuid() == 0:
        run_as = unprivileged_user(server_host)
        account = pwd.getpwnam(run_as)
        for path in (directory, *directory.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        command += ["-u", run_as]
    with open(directory / "pgbouncer.log", "wb") as log:
        process = subprocess.Popen(
            [*command, str(directory / "pgbouncer.ini")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    pooler = Pooler(port, process, directory, user, password)
    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg2.connect(pooler.url(), connect_timeout=2).close()
            return pooler
        except psycopg2.OperationalError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_pgbouncer(pooler)
                pytest.fail(f"pgbouncer did not start ({error}):\n{pooler.log()}")
            time.sleep(0.1)


def stop_pgbouncer(pooler: Pooler) -> None:
    if pooler.process.poll() is None:
        pooler.process.terminate()  # immediate shutdown: every client has finished
        try:
            pooler.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pooler.process.kill()
            pooler.process.wait(timeout=10)


@pytest.fixture(scope="session")
def pooler(django_db_setup: None, django_db_blocker: Any) -> Iterator[Pooler]:
    """pgbouncer in transaction mode in front of the test server, for the whole session."""
    if not PGBOUNCER.exists():
        reason = f"{PGBOUNCER} not found: install Debian's pgbouncer package to run these tests"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must install it)")
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="pooler_pgbouncer_"))
    directory.chmod(0o755)
    with django_db_blocker.unblock():
        pooler = start_pgbouncer(directory)
    try:
        yield pooler
    finally:
        stop_pgbouncer(pooler)
        shutil.rmtree(directory, ignore_errors=True)


class PooledSyncs(Syncs):
    """Syncs through the pooler, whose server connections outlive them: an idle one keeps
    the application_name of the last client it served."""

    def wait_for_backends_to_go(self, timeout: float = 30.0) -> None:
        if not self.application_names:
            return
        wait_for(
            "the syncs' transactions to end",
            lambda: (
                not fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s) "
                    "AND state <> 'idle'",
                    [self.application_names],
                )
            ),
            timeout=timeout,
        )


@pytest.fixture
def syncs(clean_views_schema: None) -> Iterator[Syncs]:
    runner = PooledSyncs()
    try:
        yield runner
    finally:
        runner.close()


# Helpers ----------------------------------------------------------------------------------


class PooledReader(Reader):
    """A Reader whose connection goes through the pooler and sets nothing for its session."""

    application_name = "pooler_reader"

    def __init__(self, url: str, queries: Sequence[str], **options: Any) -> None:
        super().__init__(queries, **options)
        self.url = url

    def _connect(self) -> Any:
        connection = psycopg2.connect(self.url, application_name=self.application_name)
        connection.autocommit = True
        return connection


@contextlib.contextmanager
def reading_through(pooler: Pooler, readers: int = 2) -> Iterator[list[PooledReader]]:
    """``readers`` PooledReaders running for the duration of the block (seen reading first)."""
    started = [PooledReader(pooler.url(), POOLED_READER_QUERIES) for _ in range(readers)]
    for reader in started:
        reader.start()
    try:
        wait_for(
            "the readers' first rounds",
            lambda: all(reader.rounds or reader.errors for reader in started),
            timeout=30,
        )
        yield started
    finally:
        for reader in started:
            reader.stopped.set()
        for reader in started:
            reader.join(timeout=60)
    assert not any(reader.is_alive() for reader in started), "a reader did not stop"


def assert_readers_untroubled(readers: Sequence[PooledReader]) -> None:
    for reader in readers:
        assert reader.errors == []
        assert reader.rounds >= 3, "a reader barely ran"


def start_command(
    pooler: Pooler, *args: str, application_name: str = "pooler_command"
) -> subprocess.Popen[str]:
    """``manage.py <args>`` in a new process, through the pooler."""
    return subprocess.Popen(
        [sys.executable, str(REPOSITORY / "manage.py"), *args],
        cwd=REPOSITORY,
        env=manage_py_env(pooler.env({"PGAPPNAME": application_name})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def all_waiting_for_the_lock(
    pooler: Pooler,
    processes: Sequence[subprocess.Popen[str]],
    application_names: Sequence[str],
    readers: Sequence[PooledReader],
) -> Iterator[None]:
    """Hold the sync lock, as a sync in progress would (straight on the server, from this
    test process), until each of ``processes`` (started in the block, each with its
    application_name) is connected to the pooler and has had time to start waiting for
    the lock; then check that ``readers`` still read through the pooler while they all
    wait."""
    with sync_lock(connections["default"], schema_name(), wait=5):
        yield

        def all_connected() -> bool:
            for process in processes:
                if process.poll() is not None:
                    stdout, stderr = process.communicate()
                    pytest.fail(
                        f"{process.args!r} exited with {process.returncode} while the test "
                        f"held the sync lock:\n{stdout}\n{stderr}"
                    )
            return set(application_names) <= set(pooler.client_names())

        wait_for("every process to connect to the pooler", all_connected, timeout=60)
        time.sleep(WAITING_SECONDS)
        rounds = [reader.rounds for reader in readers]
        time.sleep(1)
        progressed = [
            reader.rounds - before for reader, before in zip(readers, rounds, strict=True)
        ]
        # A sync that waits for the lock in an open transaction keeps a server connection
        # of the pooler all that time; a few of them keep every other client out.
        assert min(progressed) > 0, (
            "readers got no server connection from the pooler while syncs waited for the lock"
        )


def communicate(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``process``'s output once it has exited; a failure if it runs for ``timeout``."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{process.args!r} still ran after {timeout:g}s (waiting for a lock nobody "
            f"holds?):\n{stdout}\n{stderr}"
        )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[str, str]:
    """Wait for ``process``; its output, once it exited 0."""
    stdout, stderr = communicate(process, timeout)
    assert process.returncode == 0, (
        f"{process.args!r}: exit {process.returncode}\n{stdout}\n{stderr}"
    )
    return stdout, stderr


def run_through(
    pooler: Pooler, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` in a new process, through the pooler."""
    process = start_command(pooler, *args)
    stdout, stderr = communicate(process, timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_failed_in_one_line(process: subprocess.Popen[str], stage: str) -> None:
    """``process``, a sync whose server connection was terminated ``stage``, exits 1 with
    one line on stderr that says so, and no traceback."""
    stdout, stderr = communicate(process, 60)
    assert process.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(
        f"CommandError: Sync of database 'default' lost its connection to PostgreSQL {stage} ("
    ), stderr
    assert stderr.rstrip().endswith("the live views are unchanged. Run sync_views again."), stderr


def assert_nothing_left_behind(pooler: Pooler) -> None:
    """Straight from the server: no advisory lock, no working schema, every view there
    and in sync; and a forced sync through the pooler gets the lock at once."""
    assert advisory_locks() == 0, "an advisory lock outlived the syncs"
    assert relations_in("views") == SHOP_RELATIONS
    assert leftovers() == []
    read_every_view()
    check = run_through(pooler, *SYNC, "--check")
    assert check.returncode == 0, check.stdout + check.stderr

    # A sync alone takes a few seconds here; one waiting for a lock nobody holds would
    # wait ORM_VIEWS_SYNC_LOCK_WAIT (300 s) and fail.
    started = time.monotonic()
    result = run_through(pooler, *SYNC, "--force", timeout=NEXT_SYNC_SECONDS * 3)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Synced on database 'default' (swap): 0 created, 9 replaced" in result.stdout
    assert elapsed < NEXT_SYNC_SECONDS, f"the sync after the others took {elapsed:.1f}s"
    assert advisory_locks() == 0
    assert pooler.server_connections() <= POOL_SIZE


# Tests ------------------------------------------------------------------------------------


def test_syncs_through_the_pooler_prepare_no_statement(
    pooler: Pooler, clean_views_schema: None
) -> None:
    # More executions of one statement than psycopg's default prepare_threshold (5), in
    # one transaction (so on one server connection), through the pooler.
    script = (
        "from django.db import connection, transaction\n"
        "with transaction.atomic(), connection.cursor() as cursor:\n"
        "    for _ in range(10):\n"
        "        cursor.execute('SELECT count(*) FROM pg_class WHERE relname = %s', ['x'])\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements')\n"
        "    print(connection.Database.__name__, cursor.fetchone()[0])\n"
    )
    result = run_through(pooler, "shell", "--verbosity", "0", "--command", script)

    assert result.returncode == 0, result.stdout + result.stderr
    driver, prepared = result.stdout.split()
    assert driver in ("psycopg", "psycopg2")
    assert prepared == "0"


def test_concurrent_forced_syncs_through_the_pooler_run_one_at_a_time(
    pooler: Pooler, syncs: Syncs
) -> None:
    ok(run_through(pooler, *SYNC))
    with reading_through(pooler) as readers:
        processes: list[subprocess.Popen[str]] = []
        # Every sync waits for another, and all of them take the lock one after the other
        # on whichever server connection the pooler lends them.
        with all_waiting_for_the_lock(pooler, processes, syncs.application_names, readers):
            processes += [syncs.start("--force", env=pooler.env()) for _ in range(CONCURRENT_SYNCS)]
        started = time.monotonic()
        outputs = [finish(process)[0] for process in processes]
        elapsed = time.monotonic() - started
    assert_readers_untroubled(readers)

    for stdout in outputs:
        assert "Synced on database 'default' (swap): 0 created, 9 replaced" in stdout
    print(
        f"{CONCURRENT_SYNCS} forced syncs through the pooler, one after the other: "
        f"{elapsed:.1f}s; reader rounds {[reader.rounds for reader in readers]}, slowest "
        f"query {max(reader.slowest for reader in readers):.2f}s"
    )
    assert_nothing_left_behind(pooler)


def test_refreshes_and_syncs_through_the_pooler_run_one_at_a_time(
    pooler: Pooler, syncs: Syncs
) -> None:
    ok(run_through(pooler, *SYNC))
    refresh = ("refresh_views", "--database", "default")
    with reading_through(pooler) as readers:
        processes: list[subprocess.Popen[str]] = []
        names: list[str] = []
        with all_waiting_for_the_lock(pooler, processes, names, readers):
            for round_ in range(3):
                processes.append(syncs.start("--force", env=pooler.env()))
                names.append(syncs.application_names[-1])
                # Concurrently (in place, under the sync lock), or rebuilt beside the live
                # view and swapped in (a sync of its own).
                options = ("--no-concurrently",) if round_ == 1 else ()
                names.append(f"pooler_refresh_{round_}")
                processes.append(
                    start_command(pooler, *refresh, *options, application_name=names[-1])
                )
        for process in processes:
            finish(process)
    assert_readers_untroubled(readers)

    assert_nothing_left_behind(pooler)


def test_rollbacks_and_syncs_through_the_pooler_run_one_at_a_time(
    pooler: Pooler, syncs: Syncs
) -> None:
    ok(run_through(pooler, *SYNC))
    ok(run_through(pooler, *SYNC, "--force"))  # a previous generation to roll back to
    with reading_through(pooler) as readers:
        processes: list[subprocess.Popen[str]] = []
        with all_waiting_for_the_lock(pooler, processes, syncs.application_names, readers):
            for _ in range(3):
                processes.append(syncs.start("--force", env=pooler.env()))
                processes.append(syncs.start("--rollback", env=pooler.env()))
        outputs = [finish(process)[0] for process in processes]
    assert_readers_untroubled(readers)

    # Each command left a previous generation for the next: every rollback went through.
    assert sum("Rolled back database 'default'" in stdout for stdout in outputs) == 3
    ok(run_through(pooler, *SYNC))
    ok(run_through(pooler, *SYNC, "--prune"))
    assert_nothing_left_behind(pooler)


def test_sync_through_the_pooler_whose_server_connection_is_terminated_fails_cleanly(
    pooler: Pooler, syncs: Syncs
) -> None:
    ok(run_through(pooler, *SYNC))
    before = live_state()
    with reading_through(pooler) as readers:
        process = syncs.start(
            "--force", fault_views="slow", env=pooler.env({"FAULT_VIEWS_SLOW_SECONDS": "20"})
        )
        backend = wait_for(
            "the sync to build the slow view in the staging schema",
            lambda: fetch(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()",
                ["%pg_sleep%"],
            ),
            process=process,
        )[0][0]
        fetch("SELECT pg_terminate_backend(%s)", [backend])
        assert_failed_in_one_line(process, "while it ran")
        assert live_state() == before
        assert advisory_locks() == 0
    assert_readers_untroubled(readers)

    assert_nothing_left_behind(pooler)
