"""The pure core, without a database: a desired state and a catalog snapshot in, a plan
and its statements out. What is refused, kept, replaced and dropped, and in what order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from django_orm_views import PostgresMaterialisedViewMixin, PostgresViewFromSQL
from django_orm_views.compiler import RenderedView
from django_orm_views.ddl import compile_plan
from django_orm_views.exceptions import ExternalDependentsError, ForeignObjectsError
from django_orm_views.introspection import (
    CatalogSnapshot,
    DatabaseObject,
    ExternalDependent,
    owner_marker,
    parse_owner_marker,
)
from django_orm_views.plan import ActionKind, DesiredState, SyncPlan, compare
from django_orm_views.views import declared_classes

from .utils import rendered_view

if TYPE_CHECKING:
    from pytest_django import Settings


class Totals(PostgresViewFromSQL):
    sql = "SELECT 1 AS id"


class Daily(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    sql = "SELECT 1 AS id"


for declared in (Totals, Daily):
    declared_classes.remove(declared)


def rendered(view: type, name: str, *, materialized: bool = False, reads: str = "") -> RenderedView:
    return rendered_view(
        view, name, materialized=materialized, reads=frozenset({reads} if reads else ())
    )


DESIRED = DesiredState(
    database="default",
    schema="views",
    rendered={
        "daily": rendered(Daily, "daily", materialized=True),
        "totals": rendered(Totals, "totals", reads="daily"),
    },
    order=["daily", "totals"],
    fingerprints={"daily": "fp-daily", "totals": "fp-totals"},
)


# Where the materialized views of these catalogs are stored.
STORAGE = "views__data_00000001"


def ours(name: str, fingerprint: str, kind: str = "view", **options: Any) -> DatabaseObject:
    if kind == "materialized view":
        options.setdefault("storage", STORAGE)
    return DatabaseObject(
        name=name,
        kind=kind,
        fingerprint=fingerprint,
        grantees=frozenset(options.pop("grantees", ())),
        populated=True,
        **options,
    )


def snapshot(*objects: DatabaseObject, **options: object) -> CatalogSnapshot:
    return CatalogSnapshot(
        schema="views",
        schema_exists=True,
        objects={item.name: item for item in objects},
        **options,  # type: ignore[arg-type]
    )


IN_SYNC = snapshot(
    ours("daily", "fp-daily", "materialized view"),
    ours("totals", "fp-totals"),
)


def plan_for(catalog: CatalogSnapshot, *, force: bool = False) -> SyncPlan:
    return compare(DESIRED, catalog, roles=(), strategy="swap", force=force)


def kinds(plan: SyncPlan) -> dict[str, ActionKind]:
    return {action.name: action.kind for action in plan.actions}


@pytest.mark.usefixtures("settings")
class TestCompare:
    def test_nothing_to_do_when_the_fingerprints_match(self) -> None:
        plan = plan_for(IN_SYNC)
        assert not plan
        assert kinds(plan) == {"daily": ActionKind.KEEP, "totals": ActionKind.KEEP}

    def test_a_changed_dependency_rebuilds_its_readers(self) -> None:
        catalog = snapshot(ours("daily", "old", "materialized view"), ours("totals", "fp-totals"))
        plan = plan_for(catalog)
        assert kinds(plan) == {"daily": ActionKind.REPLACE, "totals": ActionKind.REPLACE}
        assert plan.actions[1].reason == "depends on daily, which is rebuilt"

    def test_only_the_packages_objects_are_dropped(self) -> None:
        catalog = snapshot(
            *IN_SYNC.objects.values(),
            ours("gone", "fp-gone"),
            ours("hand_made", "", owned=False),
            ours("ledger", "", kind="table", owned=False),
        )
        plan = plan_for(catalog)
        assert plan.actions_of(ActionKind.DROP)[0].name == "gone"
        assert len(plan.actions_of(ActionKind.DROP)) == 1
        assert plan.foreign_objects == ("table views.ledger", "view views.hand_made")

    def test_a_view_without_marker_and_a_declared_name_is_taken_over(self) -> None:
        catalog = snapshot(
            ours("daily", "fp-daily", "materialized view"), ours("totals", "", owned=False)
        )
        plan = plan_for(catalog)
        assert kinds(plan)["totals"] is ActionKind.REPLACE
        assert plan.foreign_objects == ()

    def test_a_table_with_a_declared_name_is_foreign(self) -> None:
        catalog = snapshot(
            ours("daily", "fp-daily", "materialized view"),
            ours("totals", "", kind="table", owned=False),
        )
        plan = plan_for(catalog)
        assert plan.foreign_objects == ("table views.totals",)
        with pytest.raises(ForeignObjectsError, match=r"table views\.totals"):
            compile_plan(plan)

    def test_other_objects_in_the_schema_are_foreign(self) -> None:
        catalog = snapshot(*IN_SYNC.objects.values(), other_objects=("function views.f()",))
        assert not plan_for(catalog)  # nothing to change: nothing refused
        with pytest.raises(ForeignObjectsError, match=r"function views\.f\(\)"):
            compile_plan(plan_for(catalog, force=True))

    def test_a_users_staging_schema_is_refused(self) -> None:
        catalog = snapshot(*IN_SYNC.objects.values(), foreign_staging=True)
        with pytest.raises(ForeignObjectsError, match="'views__staging' exists"):
            compile_plan(plan_for(catalog, force=True))

    def test_grants_and_recorded_roles(self, settings: Settings) -> None:
        settings.ORM_VIEWS_GRANT_SELECT_TO = ["analytics"]
        catalog = snapshot(
            ours("daily", "fp-daily", "materialized view", grantees={"analytics"}),
            ours("totals", "fp-totals", grantees={"analytics", "deploy"}),
        )
        plan = compare(DESIRED, catalog, roles=("analytics",), strategy="swap", force=False)
        totals = plan.actions[1]
        assert totals.grants_to_revoke == {"deploy"}
        assert not totals.marker_outdated
        extra = compare(
            DESIRED, catalog, roles=("analytics", "deploy"), strategy="swap", force=False
        )
        assert extra.extra_roles == {"deploy"}
        assert extra.actions[0].grants_to_add == {"deploy"}
        assert extra.actions[0].marker_outdated


class TestCompile:
    def test_the_swap_points_to_unchanged_materialized_views_and_marks_its_schemas(
        self,
    ) -> None:
        catalog = snapshot(
            ours("daily", "fp-daily", "materialized view", generation="0f5fcccd"),
            ours("totals", "old", generation="0f5fcccd"),
        )
        compiled = compile_plan(plan_for(catalog))
        build, swap = compiled.phases
        assert build.steps[0].sql == 'CREATE SCHEMA "views__staging"'
        assert "django_orm_views:staging" in build.steps[1].sql
        build_sql = [step.sql for step in build.steps]
        assert any('COMMENT ON RULE "_RETURN" ON "views__staging"."totals"' in s for s in build_sql)
        # The unchanged materialized view is neither moved nor rebuilt: the new
        # generation points to where it is stored.
        assert (
            f'CREATE VIEW "views__staging"."daily" AS SELECT * FROM "{STORAGE}"."daily"'
            in build_sql
        )
        assert not any("CREATE MATERIALIZED VIEW" in s for s in build_sql)
        swap_sql = [step.sql for step in swap.steps]
        assert swap_sql[0] == 'ALTER SCHEMA "views" RENAME TO "views__old_0f5fcccd"'
        assert swap_sql[1].startswith(
            'COMMENT ON SCHEMA "views__old_0f5fcccd" IS \'django_orm_views:previous {"replaced_at": '
        )
        assert swap_sql[1].endswith(', "views": ["daily", "totals"]}\'')
        assert swap_sql[-2] == 'ALTER SCHEMA "views__staging" RENAME TO "views"'
        assert swap_sql[-1] == 'COMMENT ON SCHEMA "views" IS NULL'
        assert not any("SET SCHEMA" in s for s in swap_sql)
        assert swap.bounded and swap.lock_timeout and swap.single_batch
        assert compiled.replaced_schema == "views__old_0f5fcccd"

    def test_a_materialized_view_is_filled_by_refresh(self) -> None:
        compiled = compile_plan(plan_for(IN_SYNC, force=True))
        sql = [step.sql for step in compiled.phases[0].steps]
        (storage,) = [
            s.split('"')[1] for s in sql if s.startswith("CREATE SCHEMA") and "__data_" in s
        ]
        create = sql.index(
            f'CREATE MATERIALIZED VIEW "{storage}"."daily" AS SELECT 1 AS id\nWITH NO DATA'
        )
        assert sql[create + 1] == f'REFRESH MATERIALIZED VIEW "{storage}"."daily"'

    def test_a_row_type_user_of_a_replaced_view_is_refused(self) -> None:
        dependent = ExternalDependent("column v of table keeps", "row type", "totals")
        with pytest.raises(ExternalDependentsError, match=r"uses the row type of views\.totals"):
            compile_plan(plan_for(IN_SYNC, force=True), [dependent])

    def test_the_recreate_strategy_keeps_the_schema_comment(self) -> None:
        catalog = snapshot(*IN_SYNC.objects.values(), schema_comment="Analysts' views")
        plan = compare(DESIRED, catalog, roles=(), strategy="recreate", force=True)
        sql = [step.sql for step in compile_plan(plan).phases[0].steps]
        assert "COMMENT ON SCHEMA \"views\" IS 'Analysts'' views'" in sql
        assert compile_plan(plan).phases[0].idle_bounded


def test_owner_markers_round_trip() -> None:
    marker = owner_marker("abc", ["b", "a", "a"])
    assert marker == 'django_orm_views {"extra_roles": ["a", "b"], "fingerprint": "abc"}'
    parsed = parse_owner_marker(marker, None)
    assert parsed is not None
    assert (parsed.fingerprint, parsed.extra_roles) == ("abc", frozenset({"a", "b"}))
    assert parse_owner_marker("django_orm_views {broken", None) is not None
    assert parse_owner_marker(None, "django-orm-views:abc") is not None  # an older version's
    assert parse_owner_marker("made by hand", "made by hand") is None
    assert parse_owner_marker(None, None) is None
