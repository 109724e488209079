"""Statements and phases of a plan, and the edges of planning, without a database.

Three declared views: ``daily`` (materialized), ``totals`` (reads daily) and ``report``
(reads nothing). A catalog snapshot stands for what the database holds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import pytest

from django_orm_views import PostgresMaterialisedViewMixin, PostgresViewFromSQL
from django_orm_views.compiler import RenderedView
from django_orm_views.ddl import Phase, Step, compile_plan
from django_orm_views.exceptions import ExternalDependentsError, InvalidViewError
from django_orm_views.introspection import (
    CatalogSnapshot,
    DatabaseObject,
    ExternalDependent,
    WorkingSchema,
    owner_marker,
    parse_working_schema,
)
from django_orm_views.plan import ActionKind, DesiredState, SyncPlan, choose_strategy, compare
from django_orm_views.results import SyncReport, SyncResult
from django_orm_views.sql import quote_literal
from django_orm_views.views import BasePostgresView, declared_classes

from .utils import rendered_view

if TYPE_CHECKING:
    from pytest_django import Settings


class Daily(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    sql = "SELECT 1 AS id"


class Totals(PostgresViewFromSQL):
    sql = "SELECT 1 AS id"


class Report(PostgresViewFromSQL):
    sql = "SELECT 1 AS id"


# Rendered by hand below: they are no views of the test project.
for declared in (Daily, Totals, Report):
    declared_classes.remove(declared)

MODULE = __name__
CREATE_VIEW = ("CREATE VIEW", "CREATE MATERIALIZED VIEW")


def rendered(
    view: type[BasePostgresView],
    *,
    materialized: bool = False,
    with_data: bool = True,
    hidden: bool = False,
    reads: frozenset[str] = frozenset(),
) -> RenderedView:
    return rendered_view(
        view, materialized=materialized, with_data=with_data, hidden=hidden, reads=reads
    )


def desired(**overrides: RenderedView) -> DesiredState:
    views = {
        "daily": rendered(Daily, materialized=True),
        "totals": rendered(Totals, reads=frozenset({"daily"})),
        "report": rendered(Report),
        **overrides,
    }
    return DesiredState(
        database="default",
        schema="views",
        rendered=views,
        order=["daily", "totals", "report"],
        fingerprints={name: f"fp-{name}" for name in views},
    )


# Where the materialized views of these catalogs are stored.
STORAGE = "views__data_00000001"


def held(name: str, kind: str = "view", **options: Any) -> DatabaseObject:
    """A relation the package created, with the fingerprint its declaration has now."""
    options.setdefault("fingerprint", f"fp-{name}")
    options.setdefault("grantees", frozenset({"analytics"}))
    options.setdefault("populated", True)
    if kind == "materialized view":
        options.setdefault("storage", STORAGE)
    return DatabaseObject(name=name, kind=kind, **options)


def in_sync(**replaced: DatabaseObject) -> dict[str, DatabaseObject]:
    objects = {
        "daily": held("daily", "materialized view"),
        "totals": held("totals"),
        "report": held("report"),
    }
    objects.update(replaced)
    return objects


def catalog(objects: dict[str, DatabaseObject], **options: Any) -> CatalogSnapshot:
    options.setdefault("schema_exists", True)
    options.setdefault("schema_grantees", frozenset({"analytics"}))
    return CatalogSnapshot(schema="views", objects=objects, **options)


def plan(
    snapshot: CatalogSnapshot,
    *,
    state: DesiredState | None = None,
    roles: tuple[str, ...] = ("analytics",),
    strategy: str = "swap",
    force: bool = False,
    rebuild: frozenset[str] = frozenset(),
) -> SyncPlan:
    return compare(
        state or desired(),
        snapshot,
        roles=roles,
        strategy=strategy,
        force=force,
        rebuild=rebuild,
    )


def sql_of(phase: Phase) -> list[str]:
    return [step.sql for step in phase.steps]


def reasons(sync_plan: SyncPlan) -> dict[str, tuple[ActionKind, str]]:
    return {action.name: (action.kind, action.reason) for action in sync_plan.actions}


def marker(
    fingerprint: str,
    extra_roles: tuple[str, ...] = (),
    storage: str | None = None,
    generation: str | None = None,
    size: int | None = None,
) -> str:
    return quote_literal(owner_marker(fingerprint, extra_roles, storage, generation, size))


def new_storage(statements: list[str]) -> str:
    """The storage schema a compiled plan creates."""
    (name,) = [
        sql.split('"')[1] for sql in statements if sql.startswith('CREATE SCHEMA "views__data_')
    ]
    return name


@pytest.fixture(autouse=True)
def granted_to_analytics(settings: Settings) -> None:
    settings.ORM_VIEWS_GRANT_SELECT_TO = ["analytics"]


class TestGrantsOnly:
    def test_grants_are_changed_in_place_in_one_phase(self) -> None:
        snapshot = catalog(
            in_sync(totals=held("totals", grantees=frozenset({"analytics", "bi_reader"}))),
            schema_grantees=frozenset({"bi_reader"}),
        )
        sync_plan = plan(snapshot)
        assert sync_plan and not sync_plan.changes_views
        assert sync_plan.describe() == [
            f"update view totals [Totals ({MODULE})]: revoke SELECT from bi_reader",
            "grants schema views: grant USAGE to analytics",
            "grants schema views: revoke USAGE from bi_reader",
        ]
        compiled = compile_plan(sync_plan)
        assert [phase.name for phase in compiled.phases] == ["grants"]
        (grants,) = compiled.phases
        assert sql_of(grants) == [
            'REVOKE USAGE ON SCHEMA "views" FROM "bi_reader"',
            'GRANT USAGE ON SCHEMA "views" TO "analytics"',
            'REVOKE SELECT ON TABLE "views"."totals" FROM "bi_reader"',
        ]
        # Nothing is rebuilt: no retries, timeouts or schema to verify or drop.
        assert not (grants.retry_on_lock or grants.lock_timeout or grants.bounded)
        assert grants.verify_in is None
        assert compiled.replaced_schema is None
        assert compiled.statements == sql_of(grants)

    def test_extra_roles_are_granted_and_recorded_in_the_markers(self) -> None:
        sync_plan = plan(catalog(in_sync()), roles=("analytics", "deploy"))
        assert sync_plan.extra_roles == {"deploy"}
        assert sync_plan.describe() == [
            f"update materialized view daily [Daily ({MODULE})]: grant SELECT to deploy",
            f"update view totals [Totals ({MODULE})]: grant SELECT to deploy",
            f"update view report [Report ({MODULE})]: grant SELECT to deploy",
            "grants schema views: grant USAGE to deploy",
        ]
        (grants,) = compile_plan(sync_plan).phases
        assert sql_of(grants)[:3] == [
            'GRANT USAGE ON SCHEMA "views" TO "deploy"',
            'GRANT SELECT ON TABLE "views"."daily" TO "deploy"',
            f'COMMENT ON RULE "_RETURN" ON "views"."daily" '
            f"IS {marker('fp-daily', ('deploy',), STORAGE)}",
        ]

    def test_a_marker_without_the_extra_roles_alone_is_rewritten(self) -> None:
        objects = in_sync(
            report=held("report", grantees=frozenset({"analytics", "deploy"})),
            daily=held(
                "daily",
                "materialized view",
                grantees=frozenset({"analytics", "deploy"}),
                extra_roles=frozenset({"deploy"}),
            ),
            totals=held(
                "totals",
                grantees=frozenset({"analytics", "deploy"}),
                extra_roles=frozenset({"deploy"}),
            ),
        )
        sync_plan = plan(
            catalog(objects, schema_grantees=frozenset({"analytics", "deploy"})),
            roles=("analytics", "deploy"),
        )
        assert sync_plan.describe() == [
            f"update view report [Report ({MODULE})]: record the roles granted by the last sync"
        ]
        (grants,) = compile_plan(sync_plan).phases
        assert sql_of(grants) == [
            f'COMMENT ON RULE "_RETURN" ON "views"."report" IS {marker("fp-report", ("deploy",))}'
        ]

    def test_a_hidden_view_is_granted_to_nobody_and_records_no_roles(self) -> None:
        state = desired(report=rendered(Report, hidden=True))
        sync_plan = plan(catalog(in_sync()), state=state, roles=("analytics", "deploy"))
        report = sync_plan.actions[2]
        assert report.grants_to_revoke == {"analytics"}
        assert report.grants_to_add == frozenset()
        assert not report.marker_outdated
        (grants,) = compile_plan(sync_plan).phases
        assert 'REVOKE SELECT ON TABLE "views"."report" FROM "analytics"' in sql_of(grants)
        assert not any('"views"."report" TO' in sql for sql in sql_of(grants))


class TestRecreate:
    def test_one_phase_drops_readers_first_then_builds_the_schema_again(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"), gone=held("gone"))
        sync_plan = plan(catalog(objects), strategy="recreate")
        assert reasons(sync_plan)["report"] == (ActionKind.REPLACE, "definition changed")
        assert reasons(sync_plan)["gone"] == (ActionKind.DROP, "not declared")
        compiled = compile_plan(sync_plan)
        (recreate,) = compiled.phases
        assert recreate.name == "recreate"
        statements = sql_of(recreate)
        storage = new_storage(statements)
        generation = compiled.generation
        assert statements[:6] == [
            # Not declared any more: it may read any of the others, so it goes first.
            'DROP VIEW IF EXISTS "views"."gone" CASCADE',
            'DROP VIEW IF EXISTS "views"."report" CASCADE',
            'DROP VIEW IF EXISTS "views"."totals" CASCADE',
            # The view that points to the stored materialized view: a view.
            'DROP VIEW IF EXISTS "views"."daily" CASCADE',
            'DROP SCHEMA IF EXISTS "views" CASCADE',
            'CREATE SCHEMA "views"',
        ]
        assert statements[6:14] == [
            'GRANT USAGE ON SCHEMA "views" TO "analytics"',
            # A recreate rebuilds the stored views too, in a storage schema of its own.
            f'CREATE SCHEMA "{storage}"',
            f"COMMENT ON SCHEMA \"{storage}\" IS 'django_orm_views:storage'",
            f'CREATE MATERIALIZED VIEW "{storage}"."daily" AS SELECT 1 AS id\nWITH NO DATA',
            f'REFRESH MATERIALIZED VIEW "{storage}"."daily"',
            f'COMMENT ON RULE "_RETURN" ON "{storage}"."daily" '
            f"IS {marker('fp-daily', generation=generation)}",
            f'CREATE VIEW "views"."daily" AS SELECT * FROM "{storage}"."daily"',
            f'COMMENT ON RULE "_RETURN" ON "views"."daily" '
            f"IS {marker('fp-daily', storage=storage, generation=generation, size=3)}",
        ]
        # Every view is rebuilt, unchanged ones too, and nothing is left to drop.
        built = [step.view for step in recreate.steps if step.sql.startswith(CREATE_VIEW)]
        assert built == ["daily", "daily", "totals", "report"]
        assert (recreate.retry_on_lock, recreate.idle_bounded, recreate.verify_in) == (
            True,
            True,
            "views",
        )
        assert not (recreate.lock_timeout or recreate.single_batch or recreate.bounded)
        assert compiled.replaced_schema is None

    def test_any_outside_dependent_is_refused_even_on_an_unchanged_view(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"))
        dependent = ExternalDependent("public.sales", "view", "daily")
        with pytest.raises(ExternalDependentsError) as raised:
            compile_plan(plan(catalog(objects), strategy="recreate"), [dependent])
        assert str(raised.value) == (
            "Refusing to sync database 'default': objects outside the 'views' schema depend "
            "on views this sync would replace or drop (view public.sales depends on "
            "views.daily). Nothing was changed. Drop those objects (or declare them as "
            "views), then run sync_views again."
        )


class TestSwap:
    def test_a_first_sync_builds_the_staging_schema_and_renames_it(self) -> None:
        compiled = compile_plan(plan(catalog({}, schema_exists=False, schema_grantees=frozenset())))
        build, swap = compiled.phases
        assert build.verify_in == "views__staging"
        assert sql_of(build)[:3] == [
            'CREATE SCHEMA "views__staging"',
            "COMMENT ON SCHEMA \"views__staging\" IS 'django_orm_views:staging'",
            'GRANT USAGE ON SCHEMA "views__staging" TO "analytics"',
        ]
        # Nothing to move aside: no previous generation to drop afterwards.
        assert sql_of(swap) == [
            'ALTER SCHEMA "views__staging" RENAME TO "views"',
            'COMMENT ON SCHEMA "views" IS NULL',
        ]
        assert compiled.replaced_schema is None

    def test_the_live_schema_is_renamed_aside_keeping_its_comment(self) -> None:
        snapshot = catalog(
            in_sync(report=held("report", fingerprint="old")), schema_comment="Analysts"
        )
        compiled = compile_plan(plan(snapshot))
        swap_sql = sql_of(compiled.phases[1])
        assert compiled.replaced_schema is not None
        old = compiled.replaced_schema
        assert swap_sql[-4] == f'ALTER SCHEMA "views" RENAME TO "{old}"'
        # Marked as the previous generation: when it was replaced, and what it holds.
        previous = parse_working_schema(old, swap_sql[-3].split("'")[1])
        assert (previous.role, previous.views) == ("previous", ("daily", "report", "totals"))
        assert previous.replaced_at is not None
        assert abs(previous.replaced_at - time.time()) < 60
        assert swap_sql[-2:] == [
            'ALTER SCHEMA "views__staging" RENAME TO "views"',
            "COMMENT ON SCHEMA \"views\" IS 'Analysts'",
        ]
        # Kept, not dropped: queries that still read it finish, and a rollback can
        # swap it back in.
        assert not any(sql.startswith("DROP") for sql in compiled.statements)

    def test_the_previous_generation_is_named_after_the_live_one(self) -> None:
        objects = {
            name: dataclasses.replace(item, generation="5ce0b752")
            for name, item in in_sync(report=held("report", fingerprint="old")).items()
        }
        compiled = compile_plan(plan(catalog(objects)))
        assert compiled.replaced_schema == "views__old_5ce0b752"
        # Unless a schema of that name is still there: a new name then.
        taken = catalog(objects, working=(WorkingSchema("views__old_5ce0b752", "previous"),))
        other = compile_plan(plan(taken)).replaced_schema
        assert other is not None and other != "views__old_5ce0b752"
        assert other.startswith("views__old_")


class TestMovedViews:
    def test_a_view_used_outside_is_moved_with_what_it_reads(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"))
        dependent = ExternalDependent("public.sales", "view", "totals")
        build, swap = compile_plan(plan(catalog(objects)), [dependent]).phases
        # Only the changed view is built; the other two keep their identity (daily is
        # the view that points to the stored materialized view).
        assert [step.view for step in build.steps if step.sql.startswith(CREATE_VIEW)] == ["report"]
        assert sql_of(swap)[:2] == [
            'ALTER VIEW "views"."daily" SET SCHEMA "views__staging"',
            'ALTER VIEW "views"."totals" SET SCHEMA "views__staging"',
        ]

    def test_an_unused_plain_view_is_rebuilt_and_a_materialized_one_pointed_to(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"))
        build, swap = compile_plan(plan(catalog(objects))).phases
        built = [step.view for step in build.steps if step.sql.startswith(CREATE_VIEW)]
        assert built == ["daily", "totals", "report"]
        # Nothing is moved, nothing materialized is built: daily's new view points to
        # where it is stored, and no storage schema is created.
        assert f'CREATE VIEW "views__staging"."daily" AS SELECT * FROM "{STORAGE}"."daily"' in (
            sql_of(build)
        )
        assert not any("__data_" in sql and "CREATE SCHEMA" in sql for sql in sql_of(build))
        assert not any("SET SCHEMA" in sql for sql in sql_of(swap))

    def test_a_moved_view_brings_its_grants_and_marker_up_to_date(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"))
        dependent = ExternalDependent("public.sales", "view", "totals")
        sync_plan = plan(catalog(objects), roles=("analytics", "deploy"))
        _, swap = compile_plan(sync_plan, [dependent]).phases
        assert sql_of(swap)[:3] == [
            'ALTER VIEW "views"."daily" SET SCHEMA "views__staging"',
            'GRANT SELECT ON TABLE "views__staging"."daily" TO "deploy"',
            # It keeps pointing to where it is stored.
            f'COMMENT ON RULE "_RETURN" ON "views__staging"."daily" '
            f"IS {marker('fp-daily', ('deploy',), STORAGE)}",
        ]

    def test_an_outside_dependent_of_a_replaced_view_is_refused(self) -> None:
        objects = in_sync(report=held("report", fingerprint="old"))
        dependents = [
            ExternalDependent("public.sales", "view", "totals"),
            ExternalDependent("column r of table public.keeps", "row type", "report"),
        ]
        with pytest.raises(ExternalDependentsError) as raised:
            compile_plan(plan(catalog(objects)), dependents)
        # Only the dependent that blocks is named: totals can be moved across.
        assert "(column r of table public.keeps uses the row type of views.report)" in str(
            raised.value
        )
        assert "public.sales" not in str(raised.value)


class TestPopulate:
    def test_a_rebuilt_view_without_data_is_filled_and_analyzed(self) -> None:
        state = desired(daily=rendered(Daily, materialized=True, with_data=False))
        sync_plan = plan(catalog(in_sync()), state=state, rebuild=frozenset({"daily"}))
        assert reasons(sync_plan)["daily"] == (ActionKind.REPLACE, "rebuilt with fresh data")
        assert reasons(sync_plan)["totals"] == (
            ActionKind.REPLACE,
            "depends on daily, which is rebuilt",
        )
        build = compile_plan(sync_plan).phases[0]
        storage = new_storage(sql_of(build))
        daily = [step.sql for step in build.steps if step.view == "daily"]
        assert daily[:3] == [
            f'CREATE MATERIALIZED VIEW "{storage}"."daily" AS SELECT 1 AS id\nWITH NO DATA',
            f'REFRESH MATERIALIZED VIEW "{storage}"."daily"',
            f'ANALYZE "{storage}"."daily"',
        ]

    @pytest.mark.parametrize(
        ("populated", "expected"),
        [
            (False, []),
            (
                True,
                [
                    'REFRESH MATERIALIZED VIEW "{storage}"."totals"',
                    'ANALYZE "{storage}"."totals"',
                ],
            ),
        ],
    )
    def test_a_dependent_without_data_is_filled_only_when_it_was(
        self, populated: bool, expected: list[str]
    ) -> None:
        state = desired(
            totals=rendered(Totals, materialized=True, with_data=False, reads=frozenset({"daily"}))
        )
        objects = in_sync(totals=held("totals", "materialized view", populated=populated))
        sync_plan = plan(catalog(objects), state=state, rebuild=frozenset({"daily"}))
        build = compile_plan(sync_plan).phases[0]
        storage = new_storage(sql_of(build))
        totals = [step.sql for step in build.steps if step.view == "totals"]
        assert totals[0].startswith(f'CREATE MATERIALIZED VIEW "{storage}"."totals"')
        assert totals[1:-4] == [sql.format(storage=storage) for sql in expected]
        # The stored view's marker, then the view of the generation that points to it.
        assert totals[-4].startswith(f'COMMENT ON RULE "_RETURN" ON "{storage}"."totals"')
        assert (
            totals[-3]
            == f'CREATE VIEW "views__staging"."totals" AS SELECT * FROM "{storage}"."totals"'
        )
        assert totals[-2].startswith('COMMENT ON RULE "_RETURN" ON "views__staging"."totals"')
        assert totals[-1].startswith("GRANT SELECT")

    def test_a_plain_sync_fills_nothing_itself(self) -> None:
        state = desired(daily=rendered(Daily, materialized=True, with_data=False))
        build = compile_plan(plan(catalog(in_sync()), state=state, force=True)).phases[0]
        assert not any(sql.startswith(("REFRESH", "ANALYZE")) for sql in sql_of(build))


class TestBatches:
    STEPS = [
        Step("CREATE a", "a"),
        Step("COMMENT a", "a"),
        Step("CREATE b", "b"),
        Step("CREATE c", "c"),
        Step("GRANT c", "c"),
    ]

    def test_one_view_a_batch_keeps_each_view_apart(self) -> None:
        assert Phase("build", self.STEPS).batches() == [
            Step("CREATE a;\nCOMMENT a", "a"),
            Step("CREATE b", "b"),
            Step("CREATE c;\nGRANT c", "c"),
        ]

    def test_several_views_a_batch_belong_to_no_single_view(self) -> None:
        assert Phase("build", self.STEPS).batches(views_per_batch=2) == [
            Step("CREATE a;\nCOMMENT a;\nCREATE b", None),
            Step("CREATE c;\nGRANT c", "c"),
        ]

    def test_statements_of_no_view_in_a_row_share_a_batch(self) -> None:
        steps = [Step("CREATE SCHEMA s"), Step("GRANT USAGE"), Step("CREATE a", "a")]
        assert Phase("build", steps).batches() == [
            Step("CREATE SCHEMA s;\nGRANT USAGE"),
            Step("CREATE a", "a"),
        ]

    def test_a_single_batch_phase_is_one_string(self) -> None:
        assert Phase("swap", self.STEPS[:2], single_batch=True).batches() == [
            Step("CREATE a;\nCOMMENT a")
        ]
        assert Phase("swap", [], single_batch=True).batches() == []


class TestCompareEdges:
    def test_a_view_of_the_other_kind_is_replaced(self) -> None:
        sync_plan = plan(catalog(in_sync(daily=held("daily", "view"))))
        assert reasons(sync_plan)["daily"] == (
            ActionKind.REPLACE,
            "is a view in the database",
        )
        assert sync_plan.actions[0].object_kind == "materialized view"
        assert sync_plan.foreign_objects == ()

    def test_a_view_of_an_older_version_is_replaced(self) -> None:
        sync_plan = plan(catalog(in_sync(report=held("report", fingerprint=None))))
        assert reasons(sync_plan)["report"] == (
            ActionKind.REPLACE,
            "created by an older version of django-orm-views",
        )

    def test_force_gives_its_reason_before_any_other(self) -> None:
        sync_plan = plan(catalog(in_sync(report=held("report", fingerprint=None))), force=True)
        assert set(reasons(sync_plan).values()) == {(ActionKind.REPLACE, "--force")}

    def test_a_missing_schema_creates_everything_and_grants_no_usage_yet(self) -> None:
        sync_plan = plan(catalog({}, schema_exists=False, schema_grantees=frozenset()))
        assert set(reasons(sync_plan).values()) == {(ActionKind.CREATE, "new")}
        assert not sync_plan.changes_schema_grants
        assert sync_plan.describe()[0] == (
            f"create materialized view daily [Daily ({MODULE})]: new"
        )

    def test_an_unknown_strategy_names_both_sources_and_the_choices(self) -> None:
        with pytest.raises(InvalidViewError) as raised:
            choose_strategy("sideways")
        assert str(raised.value) == (
            "Unknown sync strategy 'sideways' (from ORM_VIEWS_SYNC_STRATEGY or --strategy). "
            "Use one of: swap, recreate."
        )

    def test_the_setting_chooses_when_no_strategy_is_given(self, settings: Settings) -> None:
        settings.ORM_VIEWS_SYNC_STRATEGY = "recreate"
        assert choose_strategy(None) == "recreate"
        assert choose_strategy("swap") == "swap"


class TestResults:
    def test_the_summary_says_what_was_done_or_would_be(self) -> None:
        sync_plan = plan(catalog(in_sync(report=held("report", fingerprint="old"))))
        counts = "0 created, 1 replaced, 0 dropped, 2 unchanged in 0.25s."
        would = SyncResult("default", sync_plan, dry_run=True, duration=0.25)
        assert would.summary() == f"Would sync on database 'default' (swap): {counts}"
        synced = SyncResult("default", sync_plan, applied=True, duration=0.25)
        assert synced.summary() == f"Synced on database 'default' (swap): {counts}"
        nothing = SyncResult("default", plan(catalog(in_sync())), duration=0.25)
        assert nothing.summary() == (
            "Views already in sync on database 'default' (swap): 0 created, 0 replaced, "
            "0 dropped, 3 unchanged in 0.25s."
        )

    def test_a_report_holds_one_result_for_each_database(self) -> None:
        sync_plan = plan(catalog(in_sync()))
        default = SyncResult("default", sync_plan)
        warehouse = SyncResult("warehouse", sync_plan, applied=True)
        report = SyncReport([default, warehouse])
        assert (len(report), list(report)) == (2, [default, warehouse])
        assert report["warehouse"] is warehouse
        assert report.applied
        assert not SyncReport([default]).applied
        with pytest.raises(KeyError, match="elsewhere"):
            report["elsewhere"]
