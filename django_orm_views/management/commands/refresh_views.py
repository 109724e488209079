"""``manage.py refresh_views``: refresh materialized views, dependencies first, without
blocking their readers."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from ...exceptions import RefreshFailedError, ViewError
from ...refresh import RefreshMode, RefreshResult, refresh_materialized_views
from ..base import ViewsCommand


class Command(ViewsCommand):
    verbosity_help = (
        "Verbosity: 0 prints nothing, 1 a summary line, 2 also a line for each view with its "
        "mode, rows and time."
    )
    help = (
        "Refresh materialized views (all of them, or the ones named), dependencies first. "
        "Views with a unique index are refreshed concurrently, the others rebuilt beside "
        "the live ones and swapped in: readers are never blocked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "views", nargs="*", metavar="VIEW", help="A view name or app_label.ClassName."
        )
        parser.add_argument(
            "--database",
            default="default",
            choices=tuple(connections),
            help="The database whose views to refresh (default: 'default').",
        )
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--concurrently",
            dest="concurrently",
            action="store_true",
            default=None,
            help="Refresh every view concurrently; a view that cannot be is an error.",
        )
        group.add_argument(
            "--no-concurrently",
            dest="concurrently",
            action="store_false",
            help="Rebuild every view beside the live one and swap it in.",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Fail, refreshing nothing, when a view cannot be refreshed concurrently "
            "instead of rebuilding it beside the live one.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        database: str = options["database"]
        verbosity: int = options["verbosity"]
        try:
            results = refresh_materialized_views(
                options["views"] or None,
                database=database,
                concurrently=options["concurrently"],
                strict=options["strict"],
            )
        except RefreshFailedError as error:
            self.render(error.results, database, verbosity)
            raise CommandError(str(error)) from error
        except ViewError as error:
            raise CommandError(str(error)) from error
        self.render(results, database, verbosity)

    def render(self, results: list[RefreshResult], database: str, verbosity: int) -> None:
        if verbosity >= 2:
            for result in results:
                self.stdout.write(self.line(result))
        if verbosity < 1:
            return
        refreshed = [result for result in results if result.succeeded]
        failed = len(results) - len(refreshed)
        if not results:
            self.stdout.write(f"No materialized views to refresh on database '{database}'.")
            return
        counts = [
            f"{sum(1 for result in refreshed if result.mode is mode)} {label}"
            for mode, label in (
                (RefreshMode.CONCURRENTLY, "concurrently"),
                (RefreshMode.SWAP, "by swap"),
            )
        ]
        total = sum(result.duration for result in results if result.rebuilt_with is None)
        summary = (
            f"Refreshed {len(refreshed)} materialized view(s) on database '{database}' in "
            f"{total:.2f}s: {', '.join(counts)}"
        )
        if failed:
            self.stdout.write(f"{summary}; {failed} failed.", self.style.ERROR)
        else:
            self.stdout.write(f"{summary}.", self.style.SUCCESS)

    @staticmethod
    def line(result: RefreshResult) -> str:
        name = result.view.view_name
        mode = result.mode.value
        if result.rebuilt_with is not None:
            mode += f" with {result.rebuilt_with}"
        if result.skipped:
            return f"  skipped   {name}"
        if not result.succeeded:
            return f"  failed    {name} ({mode}, {result.duration:.3f}s)"
        rows = "" if result.rows is None else f", {result.rows} rows"
        return f"  refreshed {name} ({mode}, {result.duration:.3f}s{rows})"
