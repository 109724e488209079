"""A rollback and a prune under attack: a rollback terminated while it waits for the
sync lock, one stopped (SIGSTOP) between its renames and its COMMIT, a prune while a
reader holds the previous generation or another sync holds the lock.

Every test here commits: the commands run in ``manage.py`` subprocesses, readers use
connections of their own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from django_orm_views import sync_views
from django_orm_views.locks import advisory_key

from .test_sync_faults import (
    Syncs,
    advisory_locks,
    connect,
    live_state,
    manage_sync,
    ok,
    open_transaction,
    wait_for,
)

# ``syncs``: the fixture of the sync's session tests (it stops what a test left running).
from .test_sync_sessions import (
    WAITING_FOR_THE_LOCK,
    _stopped,
    one_clear_line,
    stopping_manage_py,
    syncs as syncs,
    terminate,
)
from .utils import REPOSITORY, leftovers, manage_py_env, schemas_like

pytestmark = pytest.mark.usefixtures("clean_views_schema")

OLD_SCHEMAS = "views\\_\\_old\\_%"
ROLLBACK = ("sync_views", "--database", "default", "--rollback")

# sync_views --rollback, stopping itself right after its renames, before its COMMIT.
STOP_AFTER_RENAMES = stopping_manage_py("generations", "_swap_generations")


@pytest.fixture
def previous() -> str:
    """Views synced twice: the first generation kept as the previous one."""
    sync_views(database="default")
    (result,) = sync_views(database="default", force=True)
    assert result.previous_generation is not None
    return result.previous_generation


def test_a_rollback_terminated_while_it_waits_for_the_lock_changes_nothing(
    syncs: Syncs, previous: str
) -> None:
    before = live_state()
    with open_transaction(f"SELECT pg_advisory_xact_lock({advisory_key('views')})"):
        process = syncs.start("--rollback")
        pids = wait_for(
            "the rollback to wait for the lock",
            lambda: syncs.backends(process, WAITING_FOR_THE_LOCK),
            process=process,
        )
        time.sleep(0.3)
        terminate(pids)
        stdout, stderr = process.communicate(timeout=60)
    one_clear_line(
        subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
        "`sync_views --rollback` of database 'default' lost its connection to PostgreSQL",
        "Run sync_views --rollback again.",
    )
    assert live_state() == before
    assert schemas_like(OLD_SCHEMAS) == [previous]
    assert advisory_locks() == 0
    # Once nothing holds the lock, the same rollback goes through.
    ok(syncs.run("--rollback"))
    assert schemas_like(OLD_SCHEMAS) != [previous]


def test_a_rollback_stopped_before_its_commit_is_ended_by_the_server(
    syncs: Syncs, previous: str
) -> None:
    before = live_state()
    application_name = "generations_stopping_rollback"
    process = subprocess.Popen(
        [sys.executable, "-c", STOP_AFTER_RENAMES, *ROLLBACK],
        cwd=REPOSITORY,
        env=manage_py_env({"PGAPPNAME": application_name}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.application_name = application_name  # type: ignore[attr-defined]
    syncs.processes.append(process)
    syncs.application_names.append(application_name)
    wait_for("the rollback to stop itself after its renames", lambda: _stopped(process.pid))
    # Readers never wait for it: renaming a schema locks none of its relations.
    reader = connect()
    reader.autocommit = True
    try:
        with reader.cursor() as cursor:
            cursor.execute("SET statement_timeout = '30s'")
            started = time.perf_counter()
            cursor.execute("SELECT count(*) FROM views.shop_dailysales")
            assert time.perf_counter() - started < 2
    finally:
        reader.close()
    # ORM_VIEWS_SWAP_TIMEOUT_MS (1 s): the server ends the stopped transaction.
    wait_for("the server to end the stopped rollback", lambda: not syncs.backends(process))
    process.send_signal(signal.SIGCONT)
    stdout, stderr = process.communicate(timeout=60)
    one_clear_line(
        subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
        "lost its connection to PostgreSQL",
    )
    assert live_state() == before
    assert schemas_like(OLD_SCHEMAS) == [previous]
    assert advisory_locks() == 0


def test_a_prune_leaves_a_previous_generation_a_reader_holds(previous: str) -> None:
    with open_transaction(f"SELECT count(*) FROM {previous}.shop_ordertotals"):
        result = manage_sync("--prune")
        assert result.returncode == 0, result.stderr
        assert f"Schema {previous} is still in use" in result.stdout
        assert schemas_like(OLD_SCHEMAS) == [previous]
    result = manage_sync("--prune")
    assert result.stdout.startswith(f"Pruned database 'default': {previous}")
    assert schemas_like(OLD_SCHEMAS) == []
    assert leftovers() == []


def test_a_prune_never_runs_beside_another_sync(previous: str) -> None:
    with open_transaction(f"SELECT pg_advisory_xact_lock({advisory_key('views')})"):
        result = manage_sync("--prune")
        assert result.returncode == 0, result.stderr
        assert f"Schema {previous} is still in use (a reader, or another sync)" in result.stdout
        assert schemas_like(OLD_SCHEMAS) == [previous]
    assert advisory_locks() == 0
    ok(manage_sync("--prune"))
    assert schemas_like(OLD_SCHEMAS) == []
