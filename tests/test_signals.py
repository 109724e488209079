"""Signals for monitoring: pre_sync, post_sync, post_refresh and refresh_failed."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from django_orm_views import (
    SyncError,
    SyncPlan,
    SyncResult,
    refresh_materialized_view,
    refresh_materialized_views,
    sync_views,
)
from django_orm_views.exceptions import RefreshFailedError
from django_orm_views.signals import post_refresh, post_sync, pre_sync, refresh_failed
from django_orm_views.sync import ActionKind
from test_project.shop import postgres_views as shop_views
from test_project.shop.factories import CustomerFactory

from .utils import declare_view

pytestmark = pytest.mark.django_db

MODULE = __name__


def declare(name: str, *, materialized: bool = True, **attributes: Any) -> type[Any]:
    return declare_view(name, module=MODULE, materialized=materialized, **attributes)


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``(signal name, keyword arguments)`` of every signal sent during the test."""
    calls: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    signals: dict[str, Signal] = {
        "pre_sync": pre_sync,
        "post_sync": post_sync,
        "post_refresh": post_refresh,
        "refresh_failed": refresh_failed,
    }
    for name, signal in signals.items():

        def receiver(signal: Any = None, _name: str = name, **kwargs: Any) -> None:
            calls.append((_name, kwargs))

        signal.connect(receiver, weak=False)
        receivers.append((signal, receiver))
    yield calls
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def names(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in calls]


def test_a_sync_sends_pre_sync_then_post_sync_with_the_plan_and_result(
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    report = sync_views(database="default")

    assert names(received) == ["pre_sync", "post_sync"]
    (_, before), (_, after) = received
    assert set(before) == {"sender", "plan", "database"}
    assert set(after) == {"sender", "plan", "result", "database"}
    assert before["sender"] is SyncPlan and before["database"] == "default"
    plan = before["plan"]
    assert isinstance(plan, SyncPlan)
    assert len(plan.actions_of(ActionKind.CREATE)) == 9
    assert after["plan"] is after["result"].plan
    assert isinstance(after["result"], SyncResult)
    assert after["result"] is report["default"]
    assert after["result"].applied


def test_no_signal_when_there_is_nothing_to_sync(
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    sync_views(database="default")
    received.clear()
    sync_views(database="default")
    assert received == []


def test_a_failed_sync_sends_pre_sync_only(
    declared_views: list[type], received: list[tuple[str, dict[str, Any]]]
) -> None:
    declare("Broken", materialized=False, sql="SELECT no_such_column FROM shop_customer")
    with pytest.raises(SyncError):
        sync_views(database="default")
    assert names(received) == ["pre_sync"]


def test_post_refresh_is_sent_for_each_view_with_its_duration(
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    sync_views(database="default")
    received.clear()

    refresh_materialized_views()

    assert names(received) == ["post_refresh", "post_refresh"]
    first, second = (kwargs for _, kwargs in received)
    assert first["sender"] is first["view"] is shop_views.DailySales
    assert second["view"] is shop_views.ProductSales
    assert set(first) == {
        "sender",
        "view",
        "database",
        "duration",
        "concurrently",
        "mode",
        "rows",
        "started_at",
    }
    assert (first["database"], first["mode"], first["concurrently"], first["rows"]) == (
        "default",
        "concurrently",
        True,
        0,
    )
    assert 0 < first["duration"] < 10
    assert isinstance(first["started_at"], datetime.datetime)
    assert first["started_at"].tzinfo is not None


def test_a_swap_refresh_is_a_sync_too_and_reports_each_rebuilt_view(
    declared_views: list[type], received: list[tuple[str, dict[str, Any]]]
) -> None:
    declare("Totals", sql='SELECT sum(n) AS total FROM "views"."countries"')
    declare("Countries", sql="SELECT country, count(*) AS n FROM shop_customer GROUP BY 1")
    sync_views(database="default")
    received.clear()

    refresh_materialized_views(["countries"])

    assert names(received) == ["pre_sync", "post_sync", "post_refresh", "post_refresh"]
    assert received[0][1]["plan"].rebuild == frozenset({"countries"})
    refreshed = [(kwargs["view"].view_name, kwargs["mode"]) for _, kwargs in received[2:]]
    assert refreshed == [("countries", "swap"), ("totals", "swap")]


def test_refresh_failed_is_sent_with_the_error(
    declared_views: list[type], received: list[tuple[str, dict[str, Any]]]
) -> None:
    declare(
        "Domains",
        sql="SELECT split_part(email, '@', 2) AS domain, id FROM shop_customer",
        pk_field="domain",
    )
    CustomerFactory.create(email="ann@example.com")
    sync_views(database="default")
    CustomerFactory.create(email="bob@example.com")
    received.clear()

    with pytest.raises(RefreshFailedError):
        refresh_materialized_views(["domains"])

    assert names(received) == ["refresh_failed"]
    (_, kwargs) = received[0]
    assert set(kwargs) == {"sender", "view", "database", "duration", "mode", "error", "started_at"}
    assert kwargs["view"].view_name == "domains"
    assert kwargs["mode"] == "concurrently"
    assert kwargs["error"].startswith(
        f"Refreshing view Domains ({MODULE}) on database 'default' failed: duplicate key value "
        'violates unique constraint "domains_domain"'
    )


def test_the_legacy_function_sends_post_refresh_too(
    received: list[tuple[str, dict[str, Any]]],
) -> None:
    sync_views(database="default")
    received.clear()
    refresh_materialized_view(shop_views.DailySales)
    assert [(kwargs["view"], kwargs["mode"]) for _, kwargs in received] == [
        (shop_views.DailySales, "blocking")
    ]


def test_a_failing_receiver_is_logged_and_never_stops_the_refreshes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync_views(database="default")

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("monitoring is down")

    post_refresh.connect(broken, weak=False)
    try:
        results = refresh_materialized_views()
    finally:
        post_refresh.disconnect(broken)

    assert [result.succeeded for result in results] == [True, True]
    failures = [record for record in caplog.records if record.name == "django_orm_views"]
    assert [record.getMessage().split(" of the refresh signal for ")[1] for record in failures] == [
        "shop_dailysales failed: monitoring is down",
        "shop_productsales failed: monitoring is down",
    ]
