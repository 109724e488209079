"""Readers on a hot standby while syncs run on the primary.

A hot standby replays the primary's DDL, and with it every ACCESS EXCLUSIVE lock on a
relation: the drop of the schema a swap replaced, the move of an unchanged materialized
view (``ALTER MATERIALIZED VIEW ... SET SCHEMA``), a non-concurrent refresh. A standby
query that holds a lock on that relation makes the replay wait, and after
``max_standby_streaming_delay`` the standby cancels the query: "canceling statement due
to conflict with recovery" (SQLSTATE 40001). ``ORM_VIEWS_KEEP_PREVIOUS_SECONDS`` keeps
the replaced schema (the previous generation) instead of dropping it at once, and
materialized views are stored in ``<schema>__data_<id>`` schemas, which each
generation's views only point to, so that a sync takes no lock a standby reader could
hold.

The pair (``test_project/replication.py``) is started once for the module from the
embedded PostgreSQL's programs (the machine's when it is not installed), with ``max_standby_streaming_delay = 2s`` and
``hot_standby_feedback = on`` (so that only the package's locks can cancel a query), or
given by ``DATABASE_URL`` and ``STANDBY_DATABASE_URL``. The tests use a database of
their own on it. Every migration, sync and refresh runs in a ``manage.py`` process
pointed at the primary; the readers are connections of this process to the standby.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from test_project import replication
from test_project.replication import Node, ReplicationPair

from .conftest import ANALYTICS_ROLE, MARKETING_ROLE
from .test_sync_faults import Reader, wait_for
from .utils import REPOSITORY

pytestmark = pytest.mark.standby

DATABASE = "orm_views_standby"
STREAMING_DELAY = 2.0
KEEP_PREVIOUS = "ORM_VIEWS_KEEP_PREVIOUS_SECONDS"

SYNC = ("sync_views", "--database", "default")
REFRESH = ("refresh_views", "--database", "default")

# tests/fault_views.py's view whose SQL changes with FAULT_VIEWS_REVISION: every sync
# here gives it a new revision, so that each one really replaces views.
CHANGED_VIEW = "faults_revised"
# test_project's materialized view with a unique index (refreshed concurrently), which
# no sync here changes.
UNCHANGED_MATERIALIZED = "shop_dailysales"
# A plain view over another plain view.
PLAIN_VIEW = "shop_customerrevenue"

READER_QUERIES = [
    # A chain of three plain views (shop_countryrevenue reads PLAIN_VIEW, which reads
    # shop_ordertotals).
    "SELECT count(*) FROM views.shop_countryrevenue",
    f"SELECT count(*) FROM views.{UNCHANGED_MATERIALIZED}",
    # Both materialized views in one query, as a dashboard's join reads them: a replayed
    # transaction that locks both could deadlock with it.
    f"SELECT count(*) > 0 FROM views.shop_productsales, views.{UNCHANGED_MATERIALIZED}",
    f"SELECT revision > 0 FROM views.{CHANGED_VIEW}",
]

# manage.py with tests/fault_views.py's views (FAULT_VIEWS, FAULT_VIEWS_REVISION);
# test_project's settings take ORM_VIEWS_KEEP_PREVIOUS_SECONDS from the environment.
RUN_MANAGE_PY = (
    "import os, sys\n"
    "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'test_project.settings')\n"
    "import django\n"
    "django.setup()\n"
    "import tests.fault_views\n"
    "from django.core.management import execute_from_command_line\n"
    "execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
)

# SQLSTATE of a query cancelled because of a conflict with recovery.
SERIALIZATION_FAILURE = "40001"


# The pair and its primary -----------------------------------------------------------------


def start_or_skip() -> ReplicationPair:
    """The environment's pair, or a new one; skips (fails under CI) without either."""
    pair = replication.pair_from_environment()
    if pair is not None:
        return pair
    if replication.find_bin_dir() is None:
        reason = (
            "no primary and hot standby: STANDBY_DATABASE_URL is not set and no PostgreSQL "
            "programs were found to start them (install the 'embedded' extra)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must provide them)")
        pytest.skip(reason)
    return replication.start_pair(max_standby_streaming_delay=STREAMING_DELAY)


@dataclass
class Primary:
    """Runs ``manage.py`` in new processes pointed at the pair's primary."""

    pair: ReplicationPair
    revision: int = 0

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != KEEP_PREVIOUS}
        env.update(
            {
                "DATABASE_URL": self.pair.primary.url,
                # <DATABASE>_warehouse, created on the primary by test_project's settings.
                "WAREHOUSE_DATABASE_URL": "",
                "FAULT_VIEWS": "revised",
                "FAULT_VIEWS_REVISION": str(self.revision),
                "PGAPPNAME": "standby_tests_manage_py",
            }
        )
        env.update(extra or {})
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """``manage.py <args>``; its output, once it exited 0."""
        result = subprocess.run(
            [sys.executable, "-c", RUN_MANAGE_PY, *args],
            cwd=REPOSITORY,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, (
            f"manage.py {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def sync(self, *, keep_previous: int) -> str:
        """A sync that replaces views (``CHANGED_VIEW`` gets a new revision), keeping the
        replaced schema for ``keep_previous`` seconds."""
        self.revision += 1
        stdout = self.run(*SYNC, env={KEEP_PREVIOUS: str(keep_previous)})
        assert "Synced on database 'default'" in stdout, stdout
        return stdout

    def refresh(self, *options: str) -> str:
        return self.run(*REFRESH, *options)


@pytest.fixture(scope="module")
def standby_pair() -> Iterator[ReplicationPair]:
    """A primary and hot standby, connected to a new database of the tests' own."""
    pair = start_or_skip()
    try:
        for_tests = pair.create_database(DATABASE)
        yield for_tests
        for_tests.drop_database()
        with contextlib.suppress(psycopg2.Error):
            for_tests.with_database(f"{DATABASE}_warehouse").drop_database()
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def primary(standby_pair: ReplicationPair) -> Primary:
    """The primary with test_project's tables, a small shop and every view synced, all of
    it replayed on the standby."""
    # test_project grants SELECT to these roles; roles belong to the whole server.
    for role in (ANALYTICS_ROLE, MARKETING_ROLE):
        if not standby_pair.primary.query("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
            standby_pair.primary.query(f'CREATE ROLE "{role}" LOGIN')
    primary = Primary(standby_pair)
    primary.run("migrate", "--database", "default", "--verbosity", "0")
    primary.run("seed_shop", "--database", "default")
    primary.sync(keep_previous=3600)
    standby_pair.wait_for_replay()
    return primary


# Readers on the standby -------------------------------------------------------------------


class StandbyReader(Reader):
    """A Reader (tests/test_sync_faults.py) connected to the standby."""

    def __init__(self, node: Node, queries: Sequence[str], **options: Any) -> None:
        super().__init__(queries, **options)
        self.node = node

    def _connect(self) -> Any:
        connection = self.node.connect(application_name="standby_reader")
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '20s'")
        return connection


@contextlib.contextmanager
def reading_on(node: Node, queries: Sequence[str]) -> Iterator[StandbyReader]:
    """A StandbyReader running for the duration of the block (seen reading first)."""
    reader = StandbyReader(node, queries)
    reader.start()
    try:
        wait_for("the reader's first round", lambda: reader.rounds or reader.errors, timeout=15)
        yield reader
    finally:
        reader.stopped.set()
        reader.join(timeout=30)
    assert not reader.is_alive(), "the reader did not stop"


class LongTransaction(threading.Thread):
    """On the standby: a transaction that reads ``view`` and then stays open, holding the
    lock that read took, until released; then it reads the view again and commits.

    It waits in short ``pg_sleep`` statements rather than in one long query, so that it
    lasts exactly as long as the test needs; to the standby's replay it is the same: a
    query holding a lock on the view. ``error`` is what ended it early, if anything.
    """

    def __init__(self, node: Node, view: str, max_seconds: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.view = view
        self.max_seconds = max_seconds
        self.holding = threading.Event()
        self.released = threading.Event()
        self.error: str | None = None
        self.pgcode: str | None = None

    def run(self) -> None:
        read = f'SELECT count(*) FROM "views"."{self.view}"'
        connection = None
        try:
            connection = self.node.connect(application_name="standby_long_transaction")
            connection.autocommit = False
            deadline = time.monotonic() + self.max_seconds
            with connection.cursor() as cursor:
                cursor.execute(read)
                cursor.fetchall()
                self.holding.set()
                while not self.released.is_set():
                    if time.monotonic() > deadline:
                        self.error = f"not released within {self.max_seconds:g}s"
                        return
                    cursor.execute("SELECT pg_sleep(0.1)")
                cursor.execute(read)
                cursor.fetchall()
            connection.commit()
        except psycopg2.Error as error:
            self.pgcode = error.pgcode
            self.error = f"{error.pgcode}: {str(error).strip()}"
        finally:
            self.holding.set()
            if connection is not None:
                connection.close()


@contextlib.contextmanager
def holding(node: Node, *views: str) -> Iterator[list[LongTransaction]]:
    """A LongTransaction on each of ``views``, holding its lock when the block starts,
    released (and finished) when it ends."""
    transactions = [LongTransaction(node, view) for view in views]
    for transaction in transactions:
        transaction.start()
    try:
        for transaction in transactions:
            assert transaction.holding.wait(15), f"no lock on {transaction.view} within 15s"
            assert transaction.error is None, transaction.error
        yield transactions
    finally:
        for transaction in transactions:
            transaction.released.set()
        for transaction in transactions:
            transaction.join(timeout=30)
    assert not any(transaction.is_alive() for transaction in transactions)


def views_on(node: Node) -> dict[str, tuple[str, int]]:
    """``{name: (kind, rows)}`` of the views (plain and materialized) in the views schema."""
    names = node.query(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'views' AND c.relkind IN ('v', 'm') "
        "ORDER BY 1"
    )
    return {
        name: (kind, int(node.query(f'SELECT count(*) FROM "views"."{name}"')[0][0]))
        for name, kind in names
    }


def revision_on(node: Node) -> int:
    return int(node.query(f"SELECT revision FROM views.{CHANGED_VIEW}")[0][0])


def require_finite_delay(pair: ReplicationPair) -> float:
    """The standby's max_standby_streaming_delay, when it is short enough to wait for."""
    delay = pair.max_standby_streaming_delay
    if delay is None or delay > 10:
        pytest.skip(
            f"the standby's max_standby_streaming_delay is {delay or -1}: these tests wait "
            "for it, and need one of 10s or less"
        )
    return delay


# Tests ----------------------------------------------------------------------------------


def test_the_standby_reads_the_views_and_rows_synced_on_the_primary(primary: Primary) -> None:
    pair = primary.pair
    primary.sync(keep_previous=3600)
    pair.wait_for_replay()

    on_standby = views_on(pair.standby)
    assert on_standby == views_on(pair.primary)
    # A materialized view, or a view over one whose storage lives in another schema.
    assert on_standby[UNCHANGED_MATERIALIZED][0] in ("m", "v")
    assert on_standby[UNCHANGED_MATERIALIZED][1] > 0, "the seeded shop sold nothing"
    assert on_standby[PLAIN_VIEW][1] > 0
    assert revision_on(pair.standby) == primary.revision
    # The analytics role reads them on the standby too (grants are replayed).
    analytics = pair.standby.connect(user=ANALYTICS_ROLE)
    try:
        with analytics.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM views.{PLAIN_VIEW}")
            assert cursor.fetchone()[0] == on_standby[PLAIN_VIEW][1]
    finally:
        analytics.close()


def test_readers_on_the_standby_see_no_error_while_syncs_and_refreshes_run(
    primary: Primary,
) -> None:
    pair = primary.pair
    lags: list[float] = []
    steps: list[Callable[[], object]] = [
        lambda: primary.sync(keep_previous=3600),
        # Concurrently (unique index), then rebuilt beside the live view and swapped in.
        primary.refresh,
        lambda: primary.sync(keep_previous=3600),
        lambda: primary.refresh("--no-concurrently"),
        # The previous generation swapped back in, then the code's views again.
        lambda: primary.run(*SYNC, "--rollback"),
        lambda: primary.sync(keep_previous=3600),
    ]
    with reading_on(pair.standby, READER_QUERIES) as reader:
        for step in steps:
            step()
            lags.append(pair.wait_for_replay())
        rounds_before_stop = reader.rounds

    print(
        f"standby reader: {reader.rounds} rounds, longest query {reader.slowest * 1000:.1f} ms; "
        f"replay lag after each command: {', '.join(f'{lag * 1000:.1f} ms' for lag in lags)}"
    )
    assert reader.errors == []
    assert rounds_before_stop >= 10, "the reader barely ran"
    assert revision_on(pair.standby) == primary.revision
    # No reader waits for the streaming delay: nothing it reads is locked for long.
    assert reader.slowest < STREAMING_DELAY, f"a standby query took {reader.slowest:.2f}s"


def test_long_transactions_on_the_standby_outlive_a_sync_that_keeps_the_previous_generation(
    primary: Primary,
) -> None:
    # A reader of the view the sync replaces, and one of a materialized view it keeps,
    # each hold their lock on the standby from before the sync until after the standby
    # replayed it: nothing the sync did may wait for them, nor cancel them.
    pair = primary.pair
    delay = require_finite_delay(pair)
    with holding(pair.standby, CHANGED_VIEW, UNCHANGED_MATERIALIZED) as transactions:
        primary.sync(keep_previous=3600)
        lag = pair.wait_for_replay()
        # A replay that conflicted with them has cancelled them by now (it went on only
        # once their locks were gone); give their client a moment to hear it.
        time.sleep(0.5)
        errors = {transaction.view: transaction.error for transaction in transactions}
    print(f"replay lag after the sync: {lag * 1000:.1f} ms")

    assert errors == {CHANGED_VIEW: None, UNCHANGED_MATERIALIZED: None}
    assert revision_on(pair.standby) == primary.revision
    # Nothing made the replay wait for the readers.
    assert lag < delay, f"the replay waited {lag:.2f}s"


def test_without_a_kept_generation_a_long_transaction_on_the_standby_is_cancelled(
    primary: Primary,
) -> None:
    """Documents why ORM_VIEWS_KEEP_PREVIOUS_SECONDS exists; the cancellation is the
    expected outcome here, not a fault of the package.

    With 0, the sync drops the replaced schema at once; the standby's replay of that drop
    waits max_standby_streaming_delay for the reader's lock, then cancels the reader.
    """
    pair = primary.pair
    delay = require_finite_delay(pair)
    with holding(pair.standby, CHANGED_VIEW) as (transaction,):
        primary.sync(keep_previous=0)
        lag = pair.wait_for_replay()
        wait_for("the reader to hear of its cancellation", lambda: transaction.error, timeout=5)
    print(f"replay lag after the sync: {lag * 1000:.1f} ms; the reader got: {transaction.error}")

    assert transaction.pgcode == SERIALIZATION_FAILURE, transaction.error
    assert "conflict with recovery" in (transaction.error or "")
    # The replay waited for the reader before it cancelled it.
    assert lag > delay / 2, f"the replay waited only {lag:.2f}s"
    assert revision_on(pair.standby) == primary.revision
