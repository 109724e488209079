"""Child process of ``bench_memory.py``: sets up Django for the benchmark's views, then
does one thing, chosen by the first argument:

``setup``     nothing more (the floor: a process that only sets up Django);
``sync``      ``manage.py sync_views`` (run through ``execute_from_command_line``);
``force``     ``manage.py sync_views --force``.

The database and the view spec come from the environment set by ``bench_memory.py``.
"""

from __future__ import annotations

import sys

import _common as common
from benchapp.catalog import spec_from_environment


def main() -> None:
    mode = sys.argv[1]
    common.configure_django(common.Database.from_environment(), spec_from_environment())
    if mode == "setup":
        return
    from django.core.management import execute_from_command_line

    argv = ["manage.py", "sync_views", "--verbosity", "0"]
    if mode == "force":
        argv.append("--force")
    elif mode != "sync":
        raise SystemExit(f"unknown mode {mode!r}")
    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
