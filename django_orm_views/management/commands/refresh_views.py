"""``manage.py refresh_views``: refresh materialized views, dependencies first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ...exceptions import ViewError
from ...refresh import refresh_materialized_views
from ...registry import find_view


class Command(BaseCommand):
    help = "Refresh materialized views (all of them, or the ones named), dependencies first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "views", nargs="*", metavar="VIEW", help="A view name or app_label.ClassName."
        )
        parser.add_argument("--database", default="default", choices=tuple(connections))
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--concurrently", dest="concurrently", action="store_true", default=None)
        group.add_argument("--no-concurrently", dest="concurrently", action="store_false")

    def handle(self, *args: Any, **options: Any) -> None:
        database = options["database"]
        try:
            views = [find_view(label, database) for label in options["views"]] or None
            results = refresh_materialized_views(
                views, database=database, concurrently=options["concurrently"]
            )
        except ViewError as error:
            raise CommandError(str(error)) from error
        verbosity = options["verbosity"]
        if verbosity >= 2:
            for result in results:
                mode = "concurrently" if result.concurrently else "blocking"
                self.stdout.write(
                    f"  refreshed {result.view.view_name} ({mode}, {result.duration:.3f}s)"
                )
        if verbosity >= 1:
            total = sum(result.duration for result in results)
            self.stdout.write(
                f"Refreshed {len(results)} materialized view(s) on database '{database}' in "
                f"{total:.2f}s.",
                self.style.SUCCESS,
            )
