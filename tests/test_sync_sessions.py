"""A sync's session under attack: older snapshots reading across a swap, a backend
terminated at every stage, a sync stopped (SIGSTOP) between its swap and its COMMIT.

Every test here commits: syncs run in ``manage.py`` subprocesses (or in this process
outside any test transaction) and readers use connections of their own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import extensions

from django_orm_views import sync_views
from django_orm_views.apply import _advisory_key

from .test_sync_faults import (
    SHOP_RELATIONS,
    Syncs,
    advisory_locks,
    check_exit_code,
    connect,
    live_state,
    manage_sync,
    ok,
    open_transaction,
    wait_for,
)
from .utils import (
    REPOSITORY,
    declare_view,
    fetch,
    leftovers,
    manage_py_env,
    relations_in,
)

pytestmark = pytest.mark.usefixtures("clean_views_schema")

MILLION = 1_000_000
# A sync waiting for the lock tries it in a short transaction of its own, then sleeps
# outside it: its backend's last statement is the try, or the COMMIT that ended it.
WAITING_FOR_THE_LOCK = (
    "query LIKE '%%pg_try_advisory_xact_lock%%' OR (query = 'COMMIT' AND state = 'idle')"
)
SYNC = ("sync_views", "--database", "default")


def stopping_manage_py(module: str, function: str, when: str = "True") -> str:
    """``python -c`` code for manage.py with ``django_orm_views.<module>.<function>``
    wrapped: right after it returns, the process stops itself (SIGSTOP) when ``when``
    (an expression of its ``args``) holds, before the COMMIT that follows: a frozen
    container, a debugger, a paused VM."""
    return (
        "import os, signal, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'test_project.settings')\n"
        "import django\n"
        "django.setup()\n"
        "import tests.fault_views\n"
        f"from django_orm_views import {module} as patched\n"
        f"original = patched.{function}\n"
        "def stopping(*args, **kwargs):\n"
        "    original(*args, **kwargs)\n"
        f"    if {when}:\n"
        "        os.kill(os.getpid(), signal.SIGSTOP)\n"
        f"patched.{function} = stopping\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', *sys.argv[1:]])\n"
    )


# The sync stops after the statements of the phase STOP_AFTER_PHASE names (the swap, or
# a recreate).
STOP_AFTER_SWAP = stopping_manage_py(
    "apply", "_execute_phase", "args[1].name == os.environ['STOP_AFTER_PHASE']"
)


@pytest.fixture
def syncs() -> Iterator[Syncs]:
    started = Syncs()
    yield started
    for process in started.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.communicate()
    started.wait_for_backends_to_go()


def one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """A failed sync: non-zero, no traceback, one line naming what happened."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]


def terminate(pids: list[int]) -> None:
    for pid in pids:
        fetch("SELECT pg_terminate_backend(%s)", [pid])


# Old snapshots never read an empty view ---------------------------------------------------


@pytest.fixture
def million_rows(declared_views: list[type]) -> type[Any]:
    view = declare_view(
        "Million",
        module="tests.test_sync_sessions",
        prefix="sessions",
        pk_field="id",
        sql="SELECT g AS id FROM generate_series(1, 1000000) AS g",
    )
    declared_views.append(view)
    return view


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
@pytest.mark.parametrize("rebuild", ["sync --force", "refresh by swap"])
def test_an_older_snapshot_reads_old_or_new_rows_never_none(
    million_rows: type[Any], isolation: str, rebuild: str
) -> None:
    sync_views(database="default")
    reader = connect()
    try:
        reader.set_session(
            isolation_level=(
                extensions.ISOLATION_LEVEL_SERIALIZABLE
                if isolation == "SERIALIZABLE"
                else extensions.ISOLATION_LEVEL_REPEATABLE_READ
            )
        )
        with reader.cursor() as cursor:
            # The snapshot is taken now, without touching the views.
            cursor.execute("SELECT count(*) FROM shop_customer")
            if rebuild == "sync --force":
                sync_views(database="default", force=True)
            else:
                from django_orm_views import refresh_materialized_views

                refresh_materialized_views([million_rows], concurrently=False)
            cursor.execute("SELECT count(*) FROM views.sessions_million")
            assert cursor.fetchone()[0] == MILLION
    finally:
        reader.rollback()
        reader.close()


# A terminated backend ends the sync cleanly ------------------------------------------------


def test_terminated_during_the_build(syncs: Syncs) -> None:
    sync_views(database="default")
    before = live_state()
    process = syncs.start("--force", fault_views="slow", env={"FAULT_VIEWS_SLOW_SECONDS": "60"})
    pids = wait_for(
        "the build to reach the slow view",
        lambda: syncs.backends(process, "query LIKE '%%pg_sleep%%'"),
        process=process,
    )
    terminate(pids)
    stdout, stderr = process.communicate(timeout=60)
    one_clear_line(
        subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
        "lost its connection to PostgreSQL while it ran",
        "the live views are unchanged",
    )
    assert live_state() == before
    assert leftovers() == []
    assert advisory_locks() == 0
    ok(manage_sync("--force"))
    assert check_exit_code() == 0


def test_terminated_while_waiting_for_the_lock(syncs: Syncs) -> None:
    sync_views(database="default")
    before = live_state()
    with open_transaction(f"SELECT pg_advisory_xact_lock({_advisory_key('views')})"):
        process = syncs.start("--force")
        pids = wait_for(
            "the sync to wait for the lock",
            lambda: syncs.backends(process, WAITING_FOR_THE_LOCK),
            process=process,
        )
        time.sleep(0.3)
        terminate(pids)
        stdout, stderr = process.communicate(timeout=60)
    one_clear_line(
        subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
        "lost its connection to PostgreSQL",
    )
    assert live_state() == before
    assert advisory_locks() == 0


def _start_stopping_sync(syncs: Syncs, strategy: str = "swap") -> subprocess.Popen[str]:
    application_name = "sessions_stopping_sync"
    phase = "swap" if strategy == "swap" else "recreate"
    process = subprocess.Popen(
        [sys.executable, "-c", STOP_AFTER_SWAP, *SYNC, "--strategy", strategy],
        cwd=REPOSITORY,
        env=manage_py_env(
            {"FAULT_VIEWS": "added", "PGAPPNAME": application_name, "STOP_AFTER_PHASE": phase}
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.application_name = application_name  # type: ignore[attr-defined]
    syncs.processes.append(process)
    syncs.application_names.append(application_name)
    wait_for("the sync to stop itself after its swap", lambda: _stopped(process.pid))
    return process


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize(
    ("strategy", "ending"),
    [("swap", "swap timeout"), ("swap", "terminated"), ("recreate", "swap timeout")],
)
def test_a_sync_stopped_before_its_commit_stalls_readers_at_most_the_swap_timeout(
    syncs: Syncs, strategy: str, ending: str
) -> None:
    sync_views(database="default")
    before = live_state()
    process = _start_stopping_sync(syncs, strategy)
    if ending == "terminated":
        terminate(syncs.backends(process))
    # A reader of the live views: whatever the stopped sync holds, it waits at most the
    # swap timeout (a swap now renames schemas only, and a recreate drops everything).
    reader = connect()
    reader.autocommit = True
    try:
        with reader.cursor() as cursor:
            cursor.execute("SET statement_timeout = '30s'")
            started = time.perf_counter()
            cursor.execute("SELECT count(*) FROM views.shop_dailysales")
            stalled = time.perf_counter() - started
    finally:
        reader.close()
    # ORM_VIEWS_SWAP_TIMEOUT_MS defaults to 1 s; bounded generously (2 shared cores).
    assert stalled < 6, f"a reader waited {stalled:.1f}s for a stopped sync"
    assert _stopped(process.pid), "the sync went on before the reader was measured"
    # The server ends the stopped sync's transaction (idle_in_transaction_session_timeout).
    wait_for("the server to end the stopped sync", lambda: not syncs.backends(process))

    process.send_signal(signal.SIGCONT)
    stdout, stderr = process.communicate(timeout=60)
    one_clear_line(
        subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
        "lost its connection to PostgreSQL",
        "Run sync_views again",
    )
    assert live_state() == before
    assert "faults_added" not in relations_in("views")
    assert leftovers() == []
    assert advisory_locks() == 0


def test_terminated_while_dropping_the_old_schema_still_exits_0(
    syncs: Syncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The previous generation dropped right after the swap, as versions before it did.
    monkeypatch.setenv("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", "0")
    sync_views(database="default")
    # A reader keeps the old plain view locked: the old schema's drop retries.
    with open_transaction("SELECT count(*) FROM views.shop_ordertotals"):
        process = syncs.start("--force")
        pids = wait_for(
            "the sync to retry dropping the old schema",
            lambda: syncs.backends(process, "query LIKE 'DROP SCHEMA%%'"),
            process=process,
        )
        terminate(pids)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "will be dropped by the next sync" in stdout
    assert relations_in("views") == SHOP_RELATIONS
    assert check_exit_code() == 0
    stdout = ok(manage_sync())
    assert "Dropped the previous generation views__old_" in stdout
    assert leftovers() == []


def test_a_sync_never_continues_without_its_lock(syncs: Syncs) -> None:
    """Two syncs, the first terminated mid-build: the second never meets its leftovers."""
    sync_views(database="default")
    first = syncs.start("--force", fault_views="slow", env={"FAULT_VIEWS_SLOW_SECONDS": "60"})
    pids = wait_for(
        "the first sync's build",
        lambda: syncs.backends(first, "query LIKE '%%pg_sleep%%'"),
        process=first,
    )
    second = syncs.start("--force")
    wait_for(
        "the second sync to wait for the lock",
        lambda: syncs.backends(second, WAITING_FOR_THE_LOCK),
        process=second,
    )
    terminate(pids)
    first.communicate(timeout=60)
    _, stderr = second.communicate(timeout=120)
    assert first.returncode != 0
    assert second.returncode == 0, stderr
    assert "already exists" not in stderr
    assert check_exit_code() == 0
    assert advisory_locks() == 0
