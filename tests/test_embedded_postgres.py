"""test_project's embedded PostgreSQL: the line naming the server, old data directories.

DB-free: nothing here starts a server (the suite's own is already running).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_project import embedded_postgres

from .utils import REPOSITORY


def test_the_server_line_names_the_url_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://app:s3cr%40t@db.example:6543/shop?sslmode=require"
    )
    assert embedded_postgres.describe_server() == (
        "PostgreSQL: DATABASE_URL postgresql://app@db.example:6543/shop"
    )


def test_the_server_line_shows_a_socket_directory_as_a_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", embedded_postgres.socket_database_url("/srv/PG data"))
    assert embedded_postgres.describe_server() == (
        "PostgreSQL: DATABASE_URL postgresql://postgres@/srv/PG data/postgres"
    )


def test_the_server_line_names_the_embedded_version_and_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if embedded_postgres.embedded_bin_dir() is None:
        pytest.skip("embedded-postgres is not installed (a session on the machine's server)")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ORM_VIEWS_PGDATA", str(tmp_path / "pgdata"))
    result = subprocess.run(
        [sys.executable, "-m", "test_project.embedded_postgres"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        check=True,
    )
    assert result.stdout.startswith("PostgreSQL: embedded 18.")
    assert result.stdout.endswith(f", data in {tmp_path / 'pgdata'}\n")
    assert not (tmp_path / "pgdata").exists(), "describing the server must not start one"


def test_a_data_directory_of_another_major_is_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("16\n")
    (data_dir / "base").mkdir()

    aside = embedded_postgres.set_aside_other_major(data_dir, "18")

    assert aside is not None
    assert not data_dir.exists()
    assert aside.parent == tmp_path
    assert aside.name.startswith("pgdata.pg16-")
    assert (aside / "PG_VERSION").read_text() == "16\n"
    assert f"made by PostgreSQL 16, not 18: moved to {aside}" in capsys.readouterr().err


def test_a_data_directory_of_the_same_major_or_none_stays(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    assert embedded_postgres.set_aside_other_major(data_dir, "18") is None
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    assert embedded_postgres.set_aside_other_major(data_dir, "18") is None
    assert (data_dir / "PG_VERSION").exists()
