"""Find a working CPython of a given minor version, for the support matrix and the tests.

    python scripts/find_python.py 3.13 [3.12 ...]   # prints the first one found, or exits 1

For each version asked (in order), the places looked at are:

1. ``$ORM_VIEWS_PYTHON<major><minor>`` (e.g. ``ORM_VIEWS_PYTHON313=/opt/py/bin/python3.13``);
2. ``python<version>`` on PATH (a pyenv shim that names no installed version fails the
   check below and is passed over);
3. pyenv's builds, ``$(pyenv root)/versions/<version>.*/bin/python<version>``, newest first,
   whether or not pyenv puts them on PATH;
4. the cache that ``scripts/python313.sh`` builds into
   (``${XDG_CACHE_HOME:-~/.cache}/django-orm-views/python<version>``).

A candidate counts only when it runs and has what a virtualenv with pip needs (venv,
ensurepip, ssl).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

CHECK = "import sys, venv, ensurepip, ssl; print('%d.%d' % sys.version_info[:2])"


def cache_dir() -> Path:
    configured = os.environ.get("ORM_VIEWS_PYTHON_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "django-orm-views"


def pyenv_root() -> Path:
    configured = os.environ.get("PYENV_ROOT")
    return Path(configured) if configured else Path.home() / ".pyenv"


def _patch_level(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


def candidates(version: str) -> Iterator[str]:
    configured = os.environ.get(f"ORM_VIEWS_PYTHON{version.replace('.', '')}")
    if configured:
        yield configured
    on_path = shutil.which(f"python{version}")
    if on_path:
        yield on_path
    builds = sorted(
        (pyenv_root() / "versions").glob(f"{version}.*"), key=_patch_level, reverse=True
    )
    for build in builds:
        if re.fullmatch(rf"{re.escape(version)}\.\d+", build.name):
            yield str(build / "bin" / f"python{version}")
    yield str(cache_dir() / f"python{version}" / "bin" / f"python{version}")


def works(interpreter: str, version: str) -> bool:
    try:
        result = subprocess.run(
            [interpreter, "-c", CHECK], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() == version


def find_python(*versions: str) -> str | None:
    """The path of the first working interpreter of the first version that has one."""
    for version in versions:
        for interpreter in candidates(version):
            if works(interpreter, version):
                return str(Path(interpreter).absolute())
    return None


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    found = find_python(*argv)
    if found is None:
        print(f"no working Python {' or '.join(argv)} found", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
