from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections

from django_orm_views import views as view_declarations
from django_orm_views.views import BasePostgresView

ANALYTICS_ROLE = "analytics"
# test_project grants shop_customersanitised to this one too (grant_select_to).
MARKETING_ROLE = "marketing"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Let every test that uses a database use all of them (test_project has two).

    A sync without ``database`` covers every alias that has views, ``warehouse``
    included; Django forbids queries to aliases a test did not ask for. A test that
    names its ``databases`` keeps its own choice.
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_db = marker is not None or {"db", "transactional_db"} & set(
            getattr(item, "fixturenames", ())
        )
        if not uses_db or (marker is not None and "databases" in marker.kwargs):
            continue
        kwargs = dict(marker.kwargs) if marker is not None else {}
        item.add_marker(
            pytest.mark.django_db(*(marker.args if marker else ()), databases="__all__", **kwargs),
            append=False,
        )


def create_role(name: str, alias: str = "default") -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s",
            [name],
        )
        if cursor.fetchone() is None:
            cursor.execute(f"CREATE ROLE {connections[alias].ops.quote_name(name)} LOGIN")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> None:
    # test_project grants SELECT to this role (ORM_VIEWS_GRANT_SELECT_TO); roles are
    # shared by the whole server, so it may exist already.
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        create_role(ANALYTICS_ROLE)
        create_role(MARKETING_ROLE)


@pytest.fixture
def declared_views() -> Iterator[list[type[BasePostgresView]]]:
    """Lets a test declare view classes of its own; they are forgotten afterwards."""
    before = list(view_declarations.declared_classes)
    yield view_declarations.declared_classes
    view_declarations.declared_classes[:] = before


def drop_view_schemas(alias: str = "default") -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = 'views' OR nspname LIKE 'views\\_\\_%%'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def clean_views_schema(transactional_db: None) -> Iterator[None]:
    """For tests that commit: start and end without any views schema."""
    drop_view_schemas()
    yield
    drop_view_schemas()
