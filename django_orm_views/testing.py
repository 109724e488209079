"""Views in test databases.

With ``ORM_VIEWS_SYNC_ON_MIGRATE = True`` nothing more is needed: Django's test runner
and pytest-django create every test database with ``migrate`` (with ``--keepdb`` /
``--reuse-db`` too, and with pytest-django's ``--no-migrations``, which still runs
``migrate --run-syncdb``), and the sync that ends each ``migrate`` creates the views.

Without that setting, turn it on for the creation of the test databases only:

- pytest-django: in your ``conftest.py``::

      from django_orm_views.testing import django_db_modify_db_settings  # noqa: F401

  This overrides pytest-django's fixture of that name (and still runs it), so that the
  views are synced as each test database is created or reused, ``--no-migrations``,
  ``--reuse-db`` and pytest-xdist workers included.

- Django's test runner: ``TEST_RUNNER = "django_orm_views.testing.ViewsTestRunner"``.

- Anything else (a fixture of your own, a ``setUpClass``): call
  :func:`sync_test_views` once the test databases exist.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import connections
from django.test.runner import DiscoverRunner
from django.test.utils import override_settings

__all__ = ["ViewsTestRunner", "django_db_modify_db_settings", "sync_test_views"]


def sync_test_views(databases: Iterable[str] | None = None, *, verbosity: int = 0) -> None:
    """Sync the views of ``databases`` (default: every alias that has views).

    Call it only once those aliases point to test databases: it writes to whatever
    database each alias names.
    """
    # Imported on use: a conftest.py imports this module before Django is set up, and
    # the views (readable views are models) need the app registry.
    from . import registry, sync

    wanted = set(registry.databases_with_views() if databases is None else databases)
    for alias in registry.databases_with_views():
        if alias not in wanted or connections[alias].settings_dict["TEST"].get("MIRROR"):
            continue
        for result in sync.sync_views(database=alias):
            if verbosity >= 1:
                sys.stdout.write(result.summary() + "\n")


# The fixture exists only where pytest does: Django's test runner needs no pytest.
if importlib.util.find_spec("pytest") is not None:
    import pytest

    @pytest.fixture(scope="session")
    # Asks for pytest-django's fixture of the same name to run after it.
    def django_db_modify_db_settings(django_db_modify_db_settings: None) -> Iterator[None]:  # noqa: ARG001
        """pytest-django: sync the views into each test database as ``migrate``
        creates it (or reuses it).

        Import it into ``conftest.py``; it wraps pytest-django's fixture of the same
        name, which runs just before the test databases are set up.
        """
        with override_settings(ORM_VIEWS_SYNC_ON_MIGRATE=True):
            yield


class ViewsTestRunner(DiscoverRunner):
    """Django's test runner, with the views synced into each test database (and into
    its clones for ``--parallel``) as ``migrate`` creates it."""

    def setup_databases(self, **kwargs: Any) -> Any:
        with override_settings(ORM_VIEWS_SYNC_ON_MIGRATE=True):
            return super().setup_databases(**kwargs)
