"""refresh_views and refresh_materialized_views against a real PostgreSQL: the choice of
concurrently or swap, dependency order, failures that leave the old contents readable,
the history, and readers that are never blocked."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection, connections, models, transaction
from django.test import override_settings

from django_orm_views import (
    RefreshError,
    plan_sync,
    refresh_materialized_view,
    refresh_materialized_views,
    sync_views,
)
from django_orm_views.exceptions import RefreshFailedError, UnknownViewError
from django_orm_views.history import record_refresh, refresh_history
from django_orm_views.models import RefreshRecord
from django_orm_views.refresh import RefreshMode
from django_orm_views.views import BasePostgresView
from test_project.shop import postgres_views as shop_views
from test_project.shop.factories import CustomerFactory, OrderLineFactory

from .utils import declare_view, fetch, oid_of, run_command, schemas_like, stored_in

MODULE = __name__


def declare(name: str, *, materialized: bool = True, **attributes: Any) -> type[Any]:
    return declare_view(name, module=MODULE, materialized=materialized, **attributes)


def count(view: str) -> int:
    return int(fetch(f'SELECT count(*) FROM "views"."{view}"')[0][0])


LINE = re.compile(r"^  refreshed (\S+) \(([a-z ._]+), \d+\.\d{3}s(?:, (\d+) rows)?\)$")


def refreshed_lines(stdout: str) -> list[tuple[str, str, str | None]]:
    """``(view, mode, rows)`` of each per-view line that refresh_views printed."""
    found = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            found.append((match[1], match[2], match[3]))
    return found


COUNTRIES_SQL = "SELECT country, count(*) AS customers FROM shop_customer GROUP BY country"


@pytest.mark.django_db
class TestModes:
    def test_concurrently_with_a_unique_index_and_swap_without_one(
        self, declared_views: list[type]
    ) -> None:
        declare("Countries", sql=COUNTRIES_SQL, pk_field="country")
        declare("CountriesNoKey", sql=COUNTRIES_SQL)
        CustomerFactory.create_batch(3, country="FR")
        sync_views(database="default")
        CustomerFactory.create_batch(2, country="DE")

        result = run_command("refresh_views", verbosity=2)

        assert result.exit_code == 0, result.stderr
        assert refreshed_lines(result.stdout) == [
            ("countries", "concurrently", "2"),
            ("countriesnokey", "swap", "2"),
            ("shop_dailysales", "concurrently", "0"),
            ("shop_productsales", "concurrently", "0"),
        ]
        assert re.fullmatch(
            r"Refreshed 4 materialized view\(s\) on database 'default' in \d+\.\d\ds: "
            r"3 concurrently, 1 by swap\.",
            result.stdout.splitlines()[-1],
        )
        assert count("countries") == count("countriesnokey") == 2

    def test_verbosity_1_prints_only_the_summary_and_0_nothing(
        self, declared_views: list[type]
    ) -> None:
        sync_views(database="default")
        result = run_command("refresh_views", "shop_dailysales")
        assert re.fullmatch(
            r"Refreshed 1 materialized view\(s\) on database 'default' in \d+\.\d\ds: "
            r"1 concurrently, 0 by swap\.\n",
            result.stdout,
        )
        assert run_command("refresh_views", verbosity=0).stdout == ""

    def test_no_concurrently_rebuilds_by_swap_keeping_indexes_grants_and_fingerprints(
        self,
    ) -> None:
        OrderLineFactory.create_batch(2, order__status="paid")
        sync_views(database="default")
        OrderLineFactory.create_batch(3, order__status="paid")
        old_oid = oid_of("shop_productsales")

        result = run_command("refresh_views", "shop.ProductSales", "--no-concurrently", verbosity=2)

        assert result.exit_code == 0, result.stderr
        assert refreshed_lines(result.stdout) == [("shop_productsales", "swap", "5")]
        assert oid_of("shop_productsales") != old_oid
        indexes = fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'shop_productsales' ORDER BY 1",
            [stored_in("shop_productsales")],
        )
        assert indexes == [
            ("shop_productsales_country",),
            ("shop_productsales_product_id_country",),
        ]
        assert fetch(
            "SELECT has_table_privilege('analytics', '\"views\".\"shop_productsales\"', 'SELECT')"
        ) == [(True,)]
        assert not plan_sync()
        assert schemas_like("views\\_\\_staging") == []
        # A new relation has no statistics: the swap analyzed it before swapping it in.
        assert fetch(
            "SELECT reltuples FROM pg_class WHERE oid = %s", [oid_of("shop_productsales")]
        ) == [(5.0,)]

    def test_a_view_never_populated_is_filled_by_swap(self, declared_views: list[type]) -> None:
        declare("LaterCountries", sql=COUNTRIES_SQL, pk_field="country", with_data=False)
        CustomerFactory.create_batch(2, country="FR")
        sync_views(database="default")
        assert fetch(
            "SELECT relispopulated FROM pg_class WHERE relname = 'latercountries' AND relkind = 'm'"
        ) == [(False,)]

        results = refresh_materialized_views(["latercountries"])

        assert [(r.view.view_name, r.mode, r.rows) for r in results] == [
            ("latercountries", RefreshMode.SWAP, 1)
        ]
        assert count("latercountries") == 1
        # Populated now, so the next refresh is a concurrent one.
        (again,) = refresh_materialized_views(["latercountries"])
        assert again.mode is RefreshMode.CONCURRENTLY
        assert not plan_sync()

    def test_a_populated_with_no_data_view_stays_populated_after_a_swap(
        self, declared_views: list[type]
    ) -> None:
        declare("LaterNoKey", sql=COUNTRIES_SQL, with_data=False)
        CustomerFactory.create_batch(2, country="FR")
        sync_views(database="default")
        refresh_materialized_views(["laternokey"])
        CustomerFactory.create_batch(1, country="DE")
        (result,) = refresh_materialized_views(["laternokey"])
        assert result.mode is RefreshMode.SWAP
        assert count("laternokey") == 2

    def test_strict_refuses_a_view_without_unique_index_and_refreshes_nothing(
        self, declared_views: list[type]
    ) -> None:
        declare("CountriesNoKey", sql=COUNTRIES_SQL)
        declare("Countries", sql=COUNTRIES_SQL, pk_field="country")
        sync_views(database="default")
        CustomerFactory.create_batch(1, country="FR")

        result = run_command("refresh_views", "--strict")

        assert result.exit_code == 1
        assert result.stderr == (
            f"CommandError: View CountriesNoKey ({MODULE}) cannot be refreshed concurrently: "
            "it has no unique index. Set `pk_field` to its unique column(s), or without "
            "--concurrently and --strict (concurrently=True, strict=True) to have it rebuilt "
            "beside the live view.\nNothing was refreshed.\n"
        )
        assert count("countries") == 0
        assert not RefreshRecord.objects.exists()

    def test_concurrently_refuses_a_view_that_was_never_populated(
        self, declared_views: list[type]
    ) -> None:
        declare("LaterCountries", sql=COUNTRIES_SQL, pk_field="country", with_data=False)
        sync_views(database="default")
        result = run_command("refresh_views", "latercountries", "--concurrently")
        assert result.exit_code == 1
        assert result.stderr == (
            f"CommandError: View LaterCountries ({MODULE}) cannot be refreshed concurrently: "
            "it has never been populated (with_data = False). Refresh it once without "
            "--concurrently and --strict (concurrently=True, strict=True) to have it rebuilt "
            "beside the live view.\nNothing was refreshed.\n"
        )

    def test_strict_allows_what_can_be_refreshed_concurrently(self) -> None:
        sync_views(database="default")
        result = run_command("refresh_views", "--strict", verbosity=2)
        assert result.exit_code == 0, result.stderr
        assert [mode for _, mode, _ in refreshed_lines(result.stdout)] == ["concurrently"] * 2


@pytest.mark.django_db
class TestNaming:
    def test_unknown_view_lists_close_matches(self) -> None:
        sync_views(database="default")
        result = run_command("refresh_views", "shop_dailysale")
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: No declared view is named 'shop_dailysale' on database 'default'. "
            "Did you mean: shop_dailysales, shop.DailySales, shop_productsales? Give a view "
            "name (e.g. shop_dailysales) or app_label.ClassName; `manage.py list_views` lists "
            "them.\n"
        )
        with pytest.raises(UnknownViewError):
            refresh_materialized_views(["nope"])

    def test_a_plain_view_cannot_be_refreshed(self) -> None:
        sync_views(database="default")
        result = run_command("refresh_views", "shop.OrderTotals")
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: View OrderTotals (test_project.shop.postgres_views) is not a "
            "materialized view, so it cannot be refreshed. Add PostgresMaterialisedViewMixin "
            "first in its bases, or do not refresh it.\n"
        )

    def test_a_view_of_another_database_is_refused(self, declared_views: list[type]) -> None:
        other = declare("Elsewhere", sql="SELECT 1 AS one", database="reporting")
        with pytest.raises(RefreshError) as raised:
            refresh_materialized_views([other])
        assert str(raised.value) == (
            f"View Elsewhere ({MODULE}) lives on database 'reporting', not 'default'. Refresh "
            "it with database='reporting' (--database reporting)."
        )

    def test_a_view_not_created_yet_asks_for_a_sync(self) -> None:
        result = run_command("refresh_views", "shop_dailysales")
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: View DailySales (test_project.shop.postgres_views) is not a "
            "materialized view in the 'views' schema of database 'default' yet. Run sync_views "
            "first.\nNothing was refreshed.\n"
        )

    def test_instances_classes_and_names_are_accepted(self) -> None:
        sync_views(database="default")
        results = refresh_materialized_views(
            [shop_views.DailySales(), "shop.ProductSales", shop_views.DailySales]
        )
        expected: list[type[BasePostgresView]] = [shop_views.DailySales, shop_views.ProductSales]
        assert [result.view for result in results] == expected


@pytest.mark.django_db
class TestDependencyOrder:
    def test_a_view_built_on_another_is_refreshed_after_it(
        self, declared_views: list[type]
    ) -> None:
        # Declared (and named) so that neither declaration order nor names give the order.
        declare(
            "ADoubled",
            sql='SELECT customers * 2 AS doubled, country FROM "views"."zcountries"',
            pk_field="country",
        )
        declare("ZCountries", sql=COUNTRIES_SQL, pk_field="country")
        CustomerFactory.create_batch(1, country="FR")
        sync_views(database="default")
        CustomerFactory.create_batch(2, country="FR")

        results = refresh_materialized_views()

        names = [result.view.view_name for result in results]
        assert [name for name in names if not name.startswith("shop_")] == [
            "zcountries",
            "adoubled",
        ]
        assert fetch('SELECT doubled FROM "views"."adoubled"') == [(6,)]

    def test_order_follows_plain_views_in_between(self, declared_views: list[type]) -> None:
        declare("ATop", sql='SELECT total FROM "views"."mmiddle"', pk_field="total")
        declare(
            "MMiddle", materialized=False, sql="SELECT sum(customers) AS total FROM views.zbase"
        )
        declare("ZBase", sql=COUNTRIES_SQL, pk_field="country")
        CustomerFactory.create_batch(1, country="FR")
        sync_views(database="default")
        CustomerFactory.create_batch(4, country="DE")

        results = refresh_materialized_views(["atop", "zbase"])

        assert [result.view.view_name for result in results] == ["zbase", "atop"]
        assert fetch('SELECT total FROM "views"."atop"') == [(5,)]

    def test_a_swap_rebuilds_the_materialized_views_that_depend_on_it(
        self, declared_views: list[type]
    ) -> None:
        declare("ATotals", sql='SELECT sum(customers) AS total FROM "views"."zbasenokey"')
        declare("ZBaseNoKey", sql=COUNTRIES_SQL)
        sync_views(database="default")
        CustomerFactory.create_batch(3, country="DE")

        result = run_command("refresh_views", "zbasenokey", verbosity=2)

        assert result.exit_code == 0, result.stderr
        assert refreshed_lines(result.stdout) == [
            ("zbasenokey", "swap", "1"),
            ("atotals", "swap with zbasenokey", "1"),
        ]
        assert fetch('SELECT total FROM "views"."atotals"') == [(3,)]
        assert not plan_sync()


# Failures ------------------------------------------------------------------------------

DOMAINS_SQL = "SELECT split_part(email, '@', 2) AS domain, id FROM shop_customer"


@pytest.mark.django_db
class TestFailures:
    def test_a_violated_unique_index_keeps_the_old_contents_and_names_the_error(
        self, declared_views: list[type]
    ) -> None:
        declare("Domains", sql=DOMAINS_SQL, pk_field="domain")
        CustomerFactory.create(email="ann@example.com")
        sync_views(database="default")
        CustomerFactory.create(email="bob@example.com")

        result = run_command("refresh_views", "domains", verbosity=2)

        assert result.exit_code == 1
        failed, summary = result.stdout.splitlines()
        assert re.fullmatch(r"  failed    domains \(concurrently, \d+\.\d{3}s\)", failed)
        assert summary.startswith("Refreshed 0 materialized view(s) on database 'default' in ")
        assert summary.endswith(": 0 concurrently, 0 by swap; 1 failed.")
        assert result.stderr == (
            f"CommandError: Refreshing view Domains ({MODULE}) on database 'default' failed: "
            'duplicate key value violates unique constraint "domains_domain" DETAIL: Key '
            "(domain)=(example.com) already exists. Its previous contents are still readable. "
            "Fix the data or the view, then refresh again.\n"
        )
        assert fetch('SELECT domain FROM "views"."domains"') == [("example.com",)]
        (record,) = refresh_history("domains")
        assert (record.mode, record.succeeded, record.rows) == ("concurrently", False, None)
        assert "duplicate key value violates unique constraint" in record.error

    def test_a_failed_swap_keeps_the_old_view_and_leaves_no_schema_behind(
        self, declared_views: list[type]
    ) -> None:
        declare("Ratio", sql="SELECT 100 / (count(*) - 2) AS ratio FROM shop_customer")
        CustomerFactory.create_batch(1)
        sync_views(database="default")
        CustomerFactory.create_batch(1)
        schemas_before = schemas_like("views\\_\\_%")

        with pytest.raises(RefreshFailedError) as raised:
            refresh_materialized_views(["ratio"])

        assert str(raised.value) == (
            f"Refreshing view Ratio ({MODULE}) on database 'default' failed: division by "
            "zero. Its previous contents are still readable. Fix the data or the view, then "
            "refresh again."
        )
        (outcome,) = raised.value.results
        assert (outcome.mode, outcome.succeeded) == (RefreshMode.SWAP, False)
        assert fetch('SELECT ratio FROM "views"."ratio"') == [(-100,)]
        assert schemas_like("views\\_\\_%") == schemas_before
        assert not plan_sync()

    def test_other_views_are_refreshed_and_dependents_of_the_failed_one_skipped(
        self, declared_views: list[type]
    ) -> None:
        declare("Domains", sql=DOMAINS_SQL, pk_field="domain")
        declare("DomainIds", sql='SELECT id FROM "views"."domains"', pk_field="id")
        declare("Countries", sql=COUNTRIES_SQL, pk_field="country")
        CustomerFactory.create(email="ann@example.com", country="FR")
        sync_views(database="default")
        CustomerFactory.create(email="bob@example.com", country="FR")

        result = run_command("refresh_views", "domains", "domainids", "countries", verbosity=2)

        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"  refreshed countries \(concurrently, \d\.\d{3}s, 1 rows\)", lines[0])
        assert re.fullmatch(r"  failed    domains \(concurrently, \d\.\d{3}s\)", lines[1])
        assert lines[2] == "  skipped   domainids"
        assert lines[3].startswith("Refreshed 1 materialized view(s) on database 'default' in ")
        assert lines[3].endswith(": 1 concurrently, 0 by swap; 2 failed.")
        assert result.stderr.splitlines()[1] == (
            f"View DomainIds ({MODULE}) was not refreshed: it depends on domains, whose "
            "refresh failed."
        )
        assert fetch('SELECT customers FROM "views"."countries"') == [(2,)]

    def test_legacy_refresh_raises_refresh_error(self, declared_views: list[type]) -> None:
        declare("Domains", sql=DOMAINS_SQL, pk_field="domain")
        CustomerFactory.create(email="ann@example.com")
        sync_views(database="default")
        CustomerFactory.create(email="bob@example.com")
        with pytest.raises(RefreshError, match=r"^Refreshing view Domains .* failed: "):
            refresh_materialized_view(declared_views[-1])
        assert connection.in_atomic_block  # the test's own transaction is still usable
        assert count("domains") == 1


@pytest.mark.django_db
class TestOutOfSync:
    def test_a_swap_is_refused_while_the_database_differs_from_the_code(
        self, declared_views: list[type]
    ) -> None:
        declare("CountriesNoKey", sql=COUNTRIES_SQL)
        sync_views(database="default")
        declare("Added", materialized=False, sql="SELECT 1 AS one")

        result = run_command("refresh_views", "countriesnokey")

        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Database 'default' differs from the declared views (create view "
            f"added [Added ({MODULE})]: new). Refreshing countriesnokey rebuilds views beside "
            "the live ones, which would apply these changes too. Nothing was refreshed. Run "
            "sync_views first, or refresh only views that can be refreshed concurrently.\n"
        )
        assert "added" not in {
            row[0]
            for row in fetch(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE nspname = 'views'"
            )
        }
        # Concurrent refreshes do not rebuild anything, so they still run.
        assert run_command("refresh_views", "shop_dailysales").exit_code == 0


@pytest.mark.django_db
class TestLegacyFunction:
    def test_refresh_materialized_view_blocks_as_documented_and_is_recorded(self) -> None:
        sync_views(database="default")
        result = refresh_materialized_view(shop_views.DailySales)
        assert (result.mode, result.concurrently, result.rows) == (RefreshMode.BLOCKING, False, 0)
        concurrent = refresh_materialized_view(shop_views.ProductSales, concurrently=True)
        assert concurrent.concurrently
        assert [(r.view, r.mode) for r in refresh_history()] == [
            ("shop_productsales", "concurrently"),
            ("shop_dailysales", "blocking"),
        ]

    def test_concurrently_without_unique_index_is_an_error(
        self, declared_views: list[type]
    ) -> None:
        view = declare("CountriesNoKey", sql=COUNTRIES_SQL)
        with pytest.raises(RefreshError) as raised:
            refresh_materialized_view(view, concurrently=True)
        assert str(raised.value) == (
            f"View CountriesNoKey ({MODULE}) cannot be refreshed concurrently: it has no "
            "unique index. Set `pk_field` to its unique column(s), or refresh without "
            "concurrently."
        )


# History -------------------------------------------------------------------------------


@pytest.mark.django_db
class TestHistory:
    def test_each_refresh_is_recorded_with_its_rows_and_duration(self) -> None:
        OrderLineFactory.create_batch(2, order__status="paid")
        sync_views(database="default")
        before = time.time()
        refresh_materialized_views()
        records = list(refresh_history(database="default"))
        assert {(r.view, r.mode, r.rows, r.succeeded, r.error) for r in records} == {
            ("shop_dailysales", "concurrently", count("shop_dailysales"), True, ""),
            ("shop_productsales", "concurrently", 2, True, ""),
        }
        for record in records:
            assert record.started_at.timestamp() >= before - 1
            assert 0 < record.duration < 10

    @override_settings(ORM_VIEWS_REFRESH_HISTORY_LIMIT=2)
    def test_only_the_latest_refreshes_of_each_view_are_kept(self) -> None:
        sync_views(database="default")
        for _ in range(4):
            refresh_materialized_views()
        assert refresh_history(shop_views.DailySales).count() == 2
        assert refresh_history("shop_productsales").count() == 2

    def test_a_broken_outer_transaction_skips_the_record_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        from django.utils import timezone

        with transaction.atomic():
            transaction.set_rollback(True)
            record = record_refresh(
                view="v", database="default", mode="swap", started_at=timezone.now(), duration=1
            )
        assert record is None
        assert "the surrounding transaction on database 'default' has failed" in caplog.text

    def test_a_missing_history_table_never_fails_a_refresh(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        sync_views(database="default")
        with connection.cursor() as cursor:  # undone with the test's transaction
            cursor.execute('DROP TABLE "django_orm_views_refreshrecord"')
        results = refresh_materialized_views()
        assert all(result.succeeded for result in results)
        assert "not recorded in the history" in caplog.text
        assert "manage.py migrate django_orm_views --database default" in caplog.text


@pytest.mark.usefixtures("clean_views_schema")
def test_a_failure_in_autocommit_mode_is_recorded_after_its_rollback(
    declared_views: list[type],
) -> None:
    declare("Domains", sql=DOMAINS_SQL, pk_field="domain")
    CustomerFactory.create(email="ann@example.com")
    sync_views(database="default")
    CustomerFactory.create(email="bob@example.com")
    assert not connection.in_atomic_block
    with pytest.raises(RefreshFailedError):
        refresh_materialized_views(["domains"])
    (record,) = RefreshRecord.objects.all()
    assert (record.view, record.succeeded) == ("domains", False)


# Readers during a refresh --------------------------------------------------------------

READER_ROWS = 1_000_000
# Generous (2 shared cores, other work running): the strict figure is the benchmark's.
MAX_READER_SECONDS = 0.2

# A reader: its own process (so that nothing in the test process, such as the planning
# of a sync, can delay its queries) and its own autocommitting connection. It queries in
# a loop, with a short pause that leaves the CPUs to the refresh, until its stdin is
# closed; then it prints every query's duration and error as JSON.
READER_SCRIPT = r"""
import json, sys, threading, time
settings = json.loads(sys.argv[1])
try:
    import psycopg as driver
except ImportError:
    import psycopg2 as driver
connection = driver.connect(**settings["connect"])
connection.autocommit = True
cursor = connection.cursor()
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
samples, position = [], settings["seed"]
print("ready", flush=True)
while not stop.is_set():
    for query in settings["queries"]:
        position = (position * 7919 + 17) % settings["rows"]
        started, error = time.perf_counter(), None
        try:
            cursor.execute(query, [position + 1])
            cursor.fetchall()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        samples.append([time.perf_counter() - started, error])
    time.sleep(settings["pause"])
connection.close()
print(json.dumps(samples), flush=True)
"""


@dataclass
class Readers:
    """Reader processes running for the duration of a ``with`` block; afterwards
    ``durations`` and ``errors`` hold what their queries saw."""

    queries: list[str]
    processes: int = 3
    pause: float = 0.002
    durations: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _running: list[subprocess.Popen[str]] = field(default_factory=list)

    def __enter__(self) -> Readers:
        database = connections["default"].settings_dict
        connect = {
            "dbname": database["NAME"],
            "user": database["USER"],
            "password": database["PASSWORD"],
            "host": database["HOST"],
            "port": database["PORT"],
        }
        for seed in range(self.processes):
            settings = {
                "connect": {key: value for key, value in connect.items() if value},
                "queries": self.queries,
                "rows": READER_ROWS,
                "pause": self.pause,
                "seed": seed,
            }
            reader = subprocess.Popen(
                [sys.executable, "-c", READER_SCRIPT, json.dumps(settings)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._running.append(reader)
        for reader in self._running:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # queries before whatever the block does
        return self

    def __exit__(self, *exc_info: object) -> None:
        time.sleep(0.3)  # and after it
        for reader in self._running:
            output, _ = reader.communicate("", timeout=60)
            for duration, error in json.loads(output):
                self.durations.append(duration)
                if error is not None:
                    self.errors.append(error)

    def slowest(self, number: int = 5) -> list[float]:
        return sorted(self.durations, reverse=True)[:number]


READER_QUERIES = [
    'SELECT n, bucket FROM "views"."readers_numbers" WHERE n = %s',
    'SELECT count(*) FROM (SELECT 1 FROM "views"."readers_numbers" LIMIT 100 OFFSET %s %% 1000) AS s',
]


@pytest.fixture
def numbers_view(declared_views: list[type], clean_views_schema: None) -> Iterator[type[Any]]:
    """A materialized view of READER_ROWS rows with an index and no unique index,
    synced and committed."""
    view = declare(
        "Numbers",
        prefix="readers",
        sql=f"SELECT g AS n, g %% 1000 AS bucket FROM generate_series(1, {READER_ROWS}) AS g",
        indexes=[models.Index(fields=["n"], name="readers_numbers_n")],
    )
    sync_views(database="default")
    yield view


def test_readers_are_never_blocked_by_refresh_views_on_a_million_rows(
    numbers_view: type[Any],
) -> None:
    with Readers(READER_QUERIES) as readers:
        result = run_command("refresh_views", "readers_numbers", verbosity=2)
    assert result.exit_code == 0, result.stderr
    assert refreshed_lines(result.stdout) == [("readers_numbers", "swap", str(READER_ROWS))]
    assert readers.errors == []
    assert len(readers.durations) > 100
    assert max(readers.durations) < MAX_READER_SECONDS, readers.slowest()

    # The same readers against a plain REFRESH (of the stored view), to show that the
    # measurement can fail.
    stored = stored_in("readers_numbers")
    with Readers(READER_QUERIES) as blocked, connection.cursor() as cursor:
        cursor.execute(f'REFRESH MATERIALIZED VIEW "{stored}"."readers_numbers"')
    assert max(blocked.durations) > 2 * MAX_READER_SECONDS, blocked.slowest()


def test_readers_are_never_blocked_by_a_concurrent_refresh(
    declared_views: list[type], clean_views_schema: None
) -> None:
    declare(
        "Numbers",
        prefix="readers",
        sql="SELECT g AS n, g %% 1000 AS bucket FROM generate_series(1, 200000) AS g",
        pk_field="n",
    )
    sync_views(database="default")
    with Readers(READER_QUERIES) as readers:
        result = run_command("refresh_views", "readers_numbers", verbosity=2)
    assert result.exit_code == 0, result.stderr
    assert refreshed_lines(result.stdout) == [("readers_numbers", "concurrently", "200000")]
    assert readers.errors == []
    assert max(readers.durations) < MAX_READER_SECONDS, readers.slowest()


@pytest.mark.django_db
def test_views_of_another_database_are_refreshed_there_and_recorded_in_default() -> None:
    sync_views(database="warehouse")
    result = run_command("refresh_views", "--database", "warehouse", verbosity=2)
    assert result.exit_code == 0, result.stderr
    assert refreshed_lines(result.stdout) == [("warehouse_dailymovements", "concurrently", "0")]
    (record,) = RefreshRecord.objects.using("default").all()
    assert (record.view, record.database) == ("warehouse_dailymovements", "warehouse")
    assert run_command("refresh_views", "shop_dailysales", "--database", "warehouse").stderr == (
        "CommandError: No declared view is named 'shop_dailysales' on database 'warehouse'. "
        "Did you mean: warehouse_dailymovements? Give a view name (e.g. shop_dailysales) or "
        "app_label.ClassName; `manage.py list_views` lists them.\n"
    )


@pytest.mark.usefixtures("clean_views_schema")
def test_a_refresh_waits_for_a_running_sync_then_gives_up_clearly() -> None:
    # Committed: inside a transaction, the sync would hold its lock until the end of it.
    from django_orm_views.apply import _advisory_key

    sync_views(database="default")
    database = connections["default"]
    holder = database.get_new_connection(database.get_connection_params())
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_advisory_key("views")])
        with override_settings(ORM_VIEWS_SYNC_LOCK_WAIT=0.2):
            result = run_command("refresh_views", "shop_dailysales")
    finally:
        holder.close()
    assert result.exit_code == 1
    assert result.stderr == (
        "CommandError: A sync of database 'default' held the sync lock for more than "
        "0.2s. Let it finish, then refresh again.\n"
    )


@pytest.mark.django_db
class TestMore:
    def test_an_outside_dependent_prevents_a_swap_and_says_what_to_do(
        self, declared_views: list[type]
    ) -> None:
        declare("CountriesNoKey", sql=COUNTRIES_SQL)
        sync_views(database="default")
        with connection.cursor() as cursor:
            cursor.execute('CREATE VIEW public.report AS SELECT * FROM "views"."countriesnokey"')

        result = run_command("refresh_views", "countriesnokey")

        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"CommandError: Refreshing view CountriesNoKey ({MODULE}) on database 'default' "
            "failed: it has to be rebuilt beside the live view, and Refusing to sync database "
            "'default': objects outside the 'views' schema depend on views this sync would "
            "replace or drop (view public.report depends on views.countriesnokey)."
        )
        assert result.stderr.endswith(
            "Alternatively give it a unique index (`pk_field`) so that it can be refreshed "
            "concurrently.\n"
        )

    def test_nothing_to_refresh(self, declared_views: list[type[BasePostgresView]]) -> None:
        declared_views[:] = [view for view in declared_views if not view.is_materialized()]
        sync_views(database="default")
        result = run_command("refresh_views")
        assert (result.exit_code, result.stdout) == (
            0,
            "No materialized views to refresh on database 'default'.\n",
        )
        assert refresh_materialized_views([]) == []

    @override_settings(ORM_VIEWS_REFRESH_HISTORY_LIMIT=None)
    def test_a_limit_of_none_keeps_every_refresh(self) -> None:
        sync_views(database="default")
        for _ in range(3):
            refresh_materialized_views(["shop_dailysales"])
        assert refresh_history("shop_dailysales").count() == 3


@pytest.mark.parametrize(("succeeded", "outcome"), [(True, "ok"), (False, "failed")])
def test_a_refresh_record_reads_as_view_database_time_and_outcome(
    succeeded: bool, outcome: str
) -> None:
    record = RefreshRecord(
        view="shop_dailysales",
        database="default",
        started_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        succeeded=succeeded,
    )
    assert str(record) == f"shop_dailysales on default at 2026-01-02 03:04:05 ({outcome})"
