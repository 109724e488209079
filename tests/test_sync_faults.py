"""The zero-downtime swap sync under faults: PostgreSQL refusing a view, syncs racing each
other, a sync killed at each stage, readers holding locks, the analytics role reading
throughout, hand-made views over the views schema, leftovers and outer transactions.

Every test here commits: syncs run in ``manage.py`` subprocesses (or in this process
outside any test transaction), and readers use connections of their own, so they see
exactly what other sessions of a real deployment would see.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg2
import pytest
from django.db import connections, transaction

from django_orm_views import sync_views

from .conftest import ANALYTICS_ROLE
from .test_sync import SHOP_INDEXES, SHOP_VIEWS
from .utils import (
    REPOSITORY,
    database_url,
    fetch,
    leftovers,
    manage_py,
    manage_py_env,
    mark_as_working_schema,
    oid_of,
    relations_in,
    schemas_like,
)

T = TypeVar("T")

# test_project's declared views and the indexes of its materialized views.
SHOP_RELATIONS = {**SHOP_VIEWS, **SHOP_INDEXES}

# Every sync here is of the default database (test_project's shop views); the warehouse
# database is left alone.
SYNC = ("sync_views", "--database", "default")

LEFTOVERS = "views\\_\\_%"  # views__staging and views__old_<hex>, for LIKE
OLD_SCHEMAS = "views\\_\\_old\\_%"

# Readers that never touch shop_product (one test locks that table).
READER_QUERIES = [
    "SELECT count(*) FROM views.shop_customerrevenue",
    "SELECT count(*) FROM views.shop_countryrevenue",
    "SELECT count(*) FROM views.shop_dailysales",
]

# Runs manage.py with tests/fault_views.py imported after django.setup(): FAULT_VIEWS in
# the environment chooses the extra views it declares.
WITH_FAULT_VIEWS = (
    "import os, sys\n"
    "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'test_project.settings')\n"
    "import django\n"
    "django.setup()\n"
    "import tests.fault_views\n"
    "from django.core.management import execute_from_command_line\n"
    "execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
)


# Helpers ----------------------------------------------------------------------------------


def wait_for(
    what: str,
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    process: subprocess.Popen[str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail if ``process`` exits
    first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            stdout, stderr = process.communicate()
            pytest.fail(
                f"the sync exited with {process.returncode} before {what}:\n{stdout}\n{stderr}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def live_state() -> list[tuple[Any, ...]]:
    """The views schema, object by object: schema oid, name, kind, oid, fingerprint
    comment and grants. Equal before and after means nothing was touched."""
    return fetch(
        "SELECT n.oid, c.relname, c.relkind, c.oid, obj_description(c.oid, 'pg_class'), "
        "c.relacl::text FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
        "WHERE n.nspname = 'views' ORDER BY c.relname"
    )


def execute(*statements: str) -> None:
    with connections["default"].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def read_every_view() -> None:
    for name, kind in relations_in("views").items():
        if kind in ("v", "m"):
            fetch(f'SELECT count(*) FROM "views"."{name}"')


def advisory_locks() -> int:
    return int(
        fetch(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )[0][0]
    )


def check_exit_code(fault_views: str = "") -> int:
    """``sync_views --check`` in a new process: 0 when the database matches the code."""
    if fault_views:
        return Syncs.run_once("--check", fault_views=fault_views).returncode
    return manage_sync("--check").returncode


def manage_sync(*options: str) -> subprocess.CompletedProcess[str]:
    """``manage.py sync_views --database default <options>`` in a new process."""
    return manage_py(*SYNC, *options)


def connect(user: str | None = None, application_name: str = "faults_reader") -> Any:
    options: dict[str, str] = {"application_name": application_name}
    if user:
        options["user"] = user
    return psycopg2.connect(database_url(), **options)


@contextlib.contextmanager
def open_transaction(*statements: str) -> Iterator[Any]:
    """A connection of its own with a transaction left open after ``statements`` (the
    locks they took stay held until the block ends)."""
    connection = connect(application_name="faults_holder")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '30s'")
            for statement in statements:
                cursor.execute(statement)
        yield connection
    finally:
        with contextlib.suppress(psycopg2.Error):
            connection.rollback()
        connection.close()


class Reader(threading.Thread):
    """Runs ``queries`` in a loop on a connection of its own (or a new connection each
    round) until stopped, or for at most ``max_rounds`` rounds and ``max_seconds``.
    Records every error, every query that returned false, and the slowest query."""

    def __init__(
        self,
        queries: Sequence[str],
        *,
        user: str | None = None,
        fresh_connections: bool = False,
        max_rounds: int = 20_000,
        max_seconds: float = 90.0,
    ) -> None:
        super().__init__(daemon=True)
        self.queries = list(queries)
        self.user = user
        self.fresh_connections = fresh_connections
        self.max_rounds = max_rounds
        self.max_seconds = max_seconds
        self.stopped = threading.Event()
        self.errors: list[str] = []
        self.rounds = 0
        self.slowest = 0.0

    def _connect(self) -> Any:
        connection = connect(self.user)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '20s'")
        return connection

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        connection = None
        try:
            while (
                not self.stopped.is_set()
                and self.rounds < self.max_rounds
                and time.monotonic() < deadline
            ):
                if connection is None:
                    connection = self._connect()
                for sql in self.queries:
                    started = time.perf_counter()
                    try:
                        with connection.cursor() as cursor:
                            cursor.execute(sql)
                            rows = cursor.fetchall()
                    except psycopg2.Error as error:
                        self.errors.append(f"{error.pgcode}: {str(error).strip()} ({sql})")
                        continue
                    finally:
                        self.slowest = max(self.slowest, time.perf_counter() - started)
                    if rows[0][0] is False:
                        self.errors.append(f"false: {sql}")
                self.rounds += 1
                if self.fresh_connections:
                    connection.close()
                    connection = None
                self.stopped.wait(0.003)
        except Exception as error:  # a broken connection, say: report it, never hang
            self.errors.append(f"reader stopped: {error!r}")
        finally:
            if connection is not None:
                connection.close()


@contextlib.contextmanager
def reading(queries: Sequence[str], **options: Any) -> Iterator[Reader]:
    """A Reader running for the duration of the block (started and seen reading first)."""
    reader = Reader(queries, **options)
    reader.start()
    try:
        wait_for("the reader's first round", lambda: reader.rounds or reader.errors, timeout=15)
        yield reader
    finally:
        reader.stopped.set()
        reader.join(timeout=30)
    assert not reader.is_alive(), "the reader did not stop"


def assert_read_without_trouble(reader: Reader, max_wait: float = 1.0) -> None:
    assert reader.errors == []
    assert reader.rounds >= 5, "the reader barely ran"
    assert reader.slowest < max_wait, f"a reader waited {reader.slowest:.2f}s"


class Syncs:
    """Starts ``manage.py sync_views --database default`` subprocesses, each with its own application_name so that its
    backend can be found in pg_stat_activity; kills what is left at the end and waits
    for their backends to go."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.application_names: list[str] = []

    @staticmethod
    def _popen(
        args: Sequence[str], fault_views: str, env: dict[str, str] | None, application_name: str
    ) -> subprocess.Popen[str]:
        extra = {"FAULT_VIEWS": fault_views, "PGAPPNAME": application_name, **(env or {})}
        if fault_views:
            command = [sys.executable, "-c", WITH_FAULT_VIEWS, *SYNC, *args]
        else:
            command = [sys.executable, str(REPOSITORY / "manage.py"), *SYNC, *args]
        return subprocess.Popen(
            command,
            cwd=REPOSITORY,
            env=manage_py_env(extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def start(
        self, *args: str, fault_views: str = "", env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        application_name = f"faults_sync_{uuid.uuid4().hex[:8]}"
        process = self._popen(args, fault_views, env, application_name)
        process.application_name = application_name  # type: ignore[attr-defined]
        self.processes.append(process)
        self.application_names.append(application_name)
        return process

    @classmethod
    def run_once(
        cls, *args: str, fault_views: str = "", timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        process = cls._popen(args, fault_views, None, "faults_sync_once")
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def run(
        self, *args: str, fault_views: str = "", timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        process = self.start(*args, fault_views=fault_views)
        stdout, stderr = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    @staticmethod
    def backends(process: subprocess.Popen[str], condition: str = "true") -> list[int]:
        """Backend pids of ``process`` that match ``condition`` (SQL on pg_stat_activity)."""
        rows = fetch(
            f"SELECT pid FROM pg_stat_activity WHERE application_name = %s AND ({condition})",
            [process.application_name],  # type: ignore[attr-defined]
        )
        return [row[0] for row in rows]

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL, (
            f"the sync ended on its own ({process.returncode}) before it was killed:\n"
            f"{stdout}\n{stderr}"
        )

    def wait_for_backends_to_go(self, timeout: float = 30.0) -> None:
        if not self.application_names:
            return
        wait_for(
            "the killed syncs' backends to end",
            lambda: (
                not fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)",
                    [self.application_names],
                )
            ),
            timeout=timeout,
        )

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        self.wait_for_backends_to_go()


@pytest.fixture
def syncs(clean_views_schema: None) -> Iterator[Syncs]:
    runner = Syncs()
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture
def hand_made_view(clean_views_schema: None) -> Iterator[str]:
    """A view in ``public`` over ``views.shop_ordertotals``, made by hand, not declared."""
    name = "public.faults_hand_made"
    yield name
    execute(f"DROP VIEW IF EXISTS {name}")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# 1. PostgreSQL refuses one view --------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [(), ("--force",), ("--strategy", "recreate")],
    ids=["swap", "swap-force", "recreate"],
)
def test_view_refused_by_postgres_fails_the_sync_and_leaves_the_live_views(
    syncs: Syncs, options: tuple[str, ...]
) -> None:
    sync_views(database="default")
    before = live_state()

    result = syncs.run(*options, fault_views="broken")

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "CommandError: View BrokenTotals (tests.fault_views): PostgreSQL refused" in result.stderr
    )
    assert 'column "no_such_column" does not exist' in result.stderr
    assert "The live views are unchanged." in result.stderr
    assert live_state() == before
    read_every_view()
    assert leftovers() == []
    assert check_exit_code() == 0


# 2. Two syncs at once ----------------------------------------------------------------------


@pytest.mark.parametrize("synced_before", [False, True], ids=["from-empty", "from-synced"])
def test_two_forced_syncs_started_at_once_both_succeed(syncs: Syncs, synced_before: bool) -> None:
    if synced_before:
        sync_views(database="default")

    first = syncs.start("--force")
    second = syncs.start("--force")
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, stdout + stderr
        assert "Synced on database 'default' (swap)" in stdout

    assert relations_in("views") == SHOP_RELATIONS
    read_every_view()
    assert check_exit_code() == 0
    assert leftovers() == []
    assert advisory_locks() == 0


# 3. A sync killed at each stage ---------------------------------------------------------------


def test_sync_killed_while_building_a_slow_view_leaves_the_live_views(syncs: Syncs) -> None:
    sync_views(database="default")
    before = live_state()
    with reading(READER_QUERIES) as reader:
        process = syncs.start("--force", fault_views="slow", env={"FAULT_VIEWS_SLOW_SECONDS": "2"})
        wait_for(
            "the sync to build the slow view in the staging schema",
            lambda: syncs.backends(process, "state = 'active' AND query LIKE '%%pg_sleep%%'"),
            process=process,
        )
        syncs.kill(process)
        assert live_state() == before

        # The next deploy's sync, while the killed sync's backend may still be sleeping.
        stdout = ok(manage_sync())
        assert "Views already in sync" in stdout
        syncs.wait_for_backends_to_go()
    assert_read_without_trouble(reader)

    assert live_state() == before
    assert check_exit_code() == 0
    assert leftovers() == []
    assert advisory_locks() == 0, "the killed sync's lock outlived its backend"


def test_sync_killed_while_its_build_waits_for_a_lock_leaves_the_live_views(syncs: Syncs) -> None:
    sync_views(database="default")
    before = live_state()
    with reading(READER_QUERIES) as reader:
        # ProductSales reads shop_product: its build waits for this lock.
        with open_transaction("LOCK TABLE shop_product IN ACCESS EXCLUSIVE MODE"):
            process = syncs.start("--force")
            wait_for(
                "the staging build to wait for the lock on shop_product",
                lambda: syncs.backends(process, "wait_event_type = 'Lock'"),
                process=process,
            )
            syncs.kill(process)
            assert live_state() == before
        syncs.wait_for_backends_to_go()

        stdout = ok(manage_sync("--force"))
        assert "Synced on database 'default' (swap): 0 created, 9 replaced" in stdout
    assert_read_without_trouble(reader)

    assert relations_in("views") == SHOP_RELATIONS
    assert check_exit_code() == 0
    assert leftovers() == []


def test_a_reader_of_an_unchanged_materialized_view_never_holds_the_swap(
    syncs: Syncs,
) -> None:
    sync_views(database="default")
    kept = oid_of("shop_dailysales")
    # The unchanged materialized view stays where it is stored: the new generation only
    # points to it, so the swap needs no lock this reader holds.
    with (
        reading(READER_QUERIES) as reader,
        open_transaction("SELECT count(*) FROM views.shop_dailysales") as holder,
    ):
        started = time.monotonic()
        stdout = ok(syncs.run(fault_views="added"))
        assert time.monotonic() - started < 30
        assert "1 created, 0 replaced, 0 dropped, 9 unchanged" in stdout
        # The reader's transaction goes on reading the previous generation's view.
        with holder.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM views.shop_dailysales")
    assert_read_without_trouble(reader)

    assert relations_in("views") == {**SHOP_RELATIONS, "faults_added": "v"}
    assert oid_of("shop_dailysales") == kept, "the unchanged materialized view was rebuilt"
    assert check_exit_code(fault_views="added") == 0
    assert leftovers() == []


@pytest.fixture
def drop_previous_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs in new processes drop the previous generation right after the swap
    (ORM_VIEWS_KEEP_PREVIOUS_SECONDS = 0), as versions before it did."""
    monkeypatch.setenv("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", "0")


def test_sync_killed_after_the_swap_leaves_the_old_schema_for_the_next_sync(
    syncs: Syncs, drop_previous_at_once: None
) -> None:
    sync_views(database="default")
    with reading(READER_QUERIES) as reader:
        with open_transaction("SELECT count(*) FROM views.shop_ordertotals") as holder:
            process = syncs.start("--force")
            old = wait_for(
                "the swap (a views__old_ schema)",
                lambda: schemas_like(OLD_SCHEMAS),
                process=process,
            )
            syncs.kill(process)
            assert schemas_like(OLD_SCHEMAS) == old
            assert leftovers() == []
            # The swap is complete: the new views are live and match the code.
            assert relations_in("views") == SHOP_RELATIONS
            assert check_exit_code() == 0
            with holder.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM views.shop_ordertotals")
        syncs.wait_for_backends_to_go()

        stdout = ok(manage_sync())
        assert f"Dropped the previous generation {old[0]}." in stdout
    assert_read_without_trouble(reader)

    assert leftovers() == []
    assert schemas_like(OLD_SCHEMAS) == []
    assert check_exit_code() == 0


# 4. A reader holding a query open --------------------------------------------------------------


def test_open_reader_blocks_neither_a_forced_sync_nor_new_readers(
    syncs: Syncs, drop_previous_at_once: None
) -> None:
    sync_views(database="default")
    with open_transaction(
        "SELECT count(*) FROM views.shop_ordertotals", "SELECT count(*) FROM views.shop_dailysales"
    ) as holder:
        with reading(READER_QUERIES, fresh_connections=True) as reader:
            started = time.monotonic()
            result = syncs.run("--force")
            elapsed = time.monotonic() - started
        stdout = ok(result)
        old = schemas_like(OLD_SCHEMAS)
        assert len(old) == 1
        assert (
            f"Readers still use the previous views; schema {old[0]} will be dropped by the next sync."
            in stdout
        )
        assert "0 created, 9 replaced, 0 dropped, 0 unchanged" in stdout
        assert elapsed < 30
        # The open transaction still reads; it now sees the new views.
        with holder.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM views.shop_dailysales")
    assert_read_without_trouble(reader)
    assert check_exit_code() == 0

    stdout = ok(manage_sync())
    assert f"Dropped the previous generation {old[0]}." in stdout
    assert leftovers() == []
    assert schemas_like(OLD_SCHEMAS) == []


def test_old_schema_kept_for_a_reader_does_not_block_the_next_forced_sync(
    syncs: Syncs, drop_previous_at_once: None
) -> None:
    # A plain view over a materialized view: the materialized view is stored apart, and
    # the old copy of the plain view, left in views__old_<hex> while a reader keeps that
    # schema, reads the stored materialized view the live generation points to.
    fault_views = "over_materialized,added"
    ok(syncs.run(fault_views="over_materialized"))
    with open_transaction("SELECT count(*) FROM views.shop_ordertotals"):
        stdout = ok(syncs.run(fault_views=fault_views))
        assert "1 created, 0 replaced, 0 dropped, 10 unchanged" in stdout
        old = schemas_like(OLD_SCHEMAS)
        assert len(old) == 1
        assert f"schema {old[0]} will be dropped by the next sync" in stdout

        # The next deploy, while the reader is still there: the old schema is the sync's
        # own leftover, not an object made by hand, and must not stop it.
        result = syncs.run("--force", fault_views=fault_views)
        assert result.returncode == 0, result.stderr
        assert "0 created, 11 replaced" in result.stdout
        # The schema it swapped out is dropped at once; only the one the reader uses stays.
        assert schemas_like(OLD_SCHEMAS) == old
    assert check_exit_code(fault_views=fault_views) == 0

    ok(syncs.run(fault_views=fault_views))
    assert leftovers() == []
    assert schemas_like(OLD_SCHEMAS) == []


# 5. The analytics role keeps its grants throughout ---------------------------------------------


def test_analytics_role_never_loses_select_while_syncs_run(syncs: Syncs) -> None:
    sync_views(database="default")
    queries = [
        "SELECT has_schema_privilege('views', 'USAGE')",
        "SELECT has_table_privilege('views.shop_countryrevenue', 'SELECT')",
        "SELECT count(*) FROM views.shop_customersanitised",
        "SELECT count(*) FROM views.shop_countryrevenue",
        "SELECT count(*) FROM views.shop_dailysales",
        "SELECT count(*) FROM views.shop_productsales",
    ]
    with reading(queries, user=ANALYTICS_ROLE) as reader:
        for options, fault_views in [
            (("--force",), ""),
            (("--force",), ""),
            ((), "added"),  # unchanged materialized views are moved across
            ((), ""),  # faults_added is dropped, materialized views moved again
            (("--force",), ""),
        ]:
            rounds = reader.rounds
            ok(syncs.run(*options, fault_views=fault_views))
            assert reader.rounds > rounds, "the reader did not read during the sync"
    assert_read_without_trouble(reader)

    # The reader really is the analytics role: the hidden view stays closed to it.
    connection = connect(ANALYTICS_ROLE)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM views.shop_internalcustomercontacts")
    finally:
        connection.close()


# 6. A hand-made view outside the schema ---------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [("--force",), ("--force", "--strategy", "recreate")],
    ids=["swap", "recreate"],
)
def test_sync_refuses_to_replace_a_view_a_hand_made_view_reads(
    hand_made_view: str, options: tuple[str, ...]
) -> None:
    sync_views(database="default")
    execute(f"CREATE VIEW {hand_made_view} AS SELECT order_id, total FROM views.shop_ordertotals")
    before = live_state()

    result = manage_sync(*options)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"view {hand_made_view} depends on views.shop_ordertotals" in result.stderr
    assert "Nothing was changed." in result.stderr
    assert live_state() == before
    assert leftovers() == []
    fetch(f"SELECT count(*) FROM {hand_made_view}")


def test_hand_made_view_over_an_unchanged_view_survives_syncs(
    syncs: Syncs, hand_made_view: str
) -> None:
    sync_views(database="default")
    execute(f"CREATE VIEW {hand_made_view} AS SELECT order_id, total FROM views.shop_ordertotals")
    kept = oid_of("shop_ordertotals")

    # A new view is added: shop_ordertotals is unchanged, so it is moved across.
    stdout = ok(syncs.run(fault_views="added"))
    assert "1 created, 0 replaced, 0 dropped, 9 unchanged" in stdout
    assert relations_in("views") == {**SHOP_RELATIONS, "faults_added": "v"}
    assert oid_of("shop_ordertotals") == kept
    fetch(f"SELECT count(*) FROM {hand_made_view}")
    assert leftovers() == []
    assert check_exit_code(fault_views="added") == 0

    # And back: the view is dropped, shop_ordertotals moved across again.
    stdout = ok(manage_sync())
    assert "0 created, 0 replaced, 1 dropped, 9 unchanged" in stdout
    assert relations_in("views") == SHOP_RELATIONS
    assert oid_of("shop_ordertotals") == kept
    fetch(f"SELECT count(*) FROM {hand_made_view}")
    assert leftovers() == []
    assert check_exit_code() == 0


# 7. Leftovers of an earlier sync ----------------------------------------------------------------


@pytest.mark.parametrize("synced_before", [False, True], ids=["from-empty", "from-synced"])
def test_leftover_working_schema_is_dropped_by_the_next_sync(
    clean_views_schema: None, synced_before: bool
) -> None:
    if synced_before:
        sync_views(database="default")
    before = live_state()
    execute(
        "CREATE SCHEMA views__old_0badf00d",
        "CREATE VIEW views__old_0badf00d.junk AS SELECT 1 AS id",
    )
    mark_as_working_schema("views__old_0badf00d", "junk")

    stdout = ok(manage_sync())

    assert "Dropped schema views__old_0badf00d left by an interrupted sync." in stdout
    assert leftovers() == []
    assert relations_in("views") == SHOP_RELATIONS
    if synced_before:
        assert "Views already in sync" in stdout
        assert live_state() == before
    read_every_view()
    assert check_exit_code() == 0


# 8. Inside an outer transaction -----------------------------------------------------------------


class Rollback(Exception):
    pass


def test_sync_inside_an_outer_transaction_is_rolled_back_with_it(clean_views_schema: None) -> None:
    sync_views(database="default")
    before = live_state()

    with pytest.raises(Rollback), transaction.atomic():
        result = sync_views(database="default", force=True)["default"]
        assert result.applied
        assert result.kept_old_schema is None
        inside = live_state()
        assert [row[1:3] for row in inside] == [row[1:3] for row in before]
        assert {row[3] for row in inside}.isdisjoint(row[3] for row in before)
        read_every_view()
        assert leftovers() == []
        raise Rollback

    assert live_state() == before
    assert leftovers() == []
    assert advisory_locks() == 0
    assert check_exit_code() == 0


def test_first_sync_inside_an_outer_transaction_commits_or_rolls_back_with_it(
    clean_views_schema: None,
) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        sync_views(database="default")
        assert relations_in("views") == SHOP_RELATIONS
        raise Rollback
    assert schemas_like("views%") == []

    with transaction.atomic():
        sync_views(database="default")
    assert relations_in("views") == SHOP_RELATIONS
    assert leftovers() == []
    assert check_exit_code() == 0
