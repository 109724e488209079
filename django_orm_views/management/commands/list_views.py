"""``manage.py list_views``: every declared view and every object in the views schema,
with its state, contents and last refresh."""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections
from django.utils import timezone

from ...conf import get_settings
from ...exceptions import ViewError
from ...history import IN_SYNC, MISSING, NOT_DECLARED, OUTDATED, ViewStatus, view_statuses
from ...introspection import CatalogSnapshot
from ...lineage import dot, mermaid, readers_of
from ...sync import databases_to_sync
from ..base import ViewsCommand

COLUMNS = (
    "NAME",
    "KIND",
    "STATE",
    "POPULATED",
    "ROWS",
    "SIZE",
    "LAST REFRESH",
    "DURATION",
    "OPTIONS",
    "GRANTEES",
)
STATE_ORDER = (IN_SYNC, OUTDATED, MISSING, NOT_DECLARED)


class Command(ViewsCommand):
    verbosity_help = "Verbosity has no effect: the listing is the output."
    help = (
        "List the declared views and the objects in the views schema: kind, state (in "
        "sync, outdated, missing, not declared), rows, size and last refresh."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            choices=tuple(connections),
            help="List this database only (default: every database that has views).",
        )
        parser.add_argument(
            "--format",
            choices=("table", "json", "mermaid", "dot"),
            default=None,
            help="table (for people, the default) or json (for scripts); with --graph, "
            "mermaid (the default) or dot (Graphviz).",
        )
        parser.add_argument(
            "--graph",
            action="store_true",
            help="Print what each view reads (tables and views) as a graph: an edge a --> b "
            "for each 'b reads a'.",
        )
        parser.add_argument(
            "--reads",
            metavar="TABLE[.COLUMN]",
            help="List the views that read this table or column, directly or through other "
            "views (what a migration of it touches).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = options["format"] or ("mermaid" if options["graph"] else "table")
        if (output in ("mermaid", "dot")) != bool(options["graph"]):
            raise CommandError(
                "--format mermaid and dot go with --graph, which prints mermaid (the default) "
                "or dot; without --graph, use --format table or json."
            )
        listings = []
        try:
            aliases = [options["database"]] if options["database"] else databases_to_sync()
            if options["reads"]:
                self.print_readers(aliases, options["reads"], output)
                return
            for alias in aliases:
                plan, statuses = view_statuses(alias)
                listings.append((alias, plan.schema, plan.snapshot, statuses))
        except ViewError as error:
            raise CommandError(str(error)) from error
        self.render(output, listings)

    def render(self, output: str, listings: list[Any]) -> None:
        if output == "json":
            rows = [status.as_dict() for _, _, _, statuses in listings for status in statuses]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if output in ("mermaid", "dot"):
            render = mermaid if output == "mermaid" else dot
            for _, schema, _, statuses in listings:
                self.stdout.write(render(schema, [status.lineage for status in statuses]))
            return
        if not listings:
            self.stdout.write("No views are declared.")
        for index, (alias, schema, snapshot, statuses) in enumerate(listings):
            if index:
                self.stdout.write("")
            self.render_table(alias, schema, snapshot, statuses)

    def print_readers(self, aliases: list[str], target: str, output: str) -> None:
        schema = get_settings().schema
        found = []
        for alias in aliases:
            label, readers = readers_of(alias, schema, target)
            ordered = sorted(readers, key=lambda item: (not item.direct, item.name))
            found += [
                {"database": alias, "reads": label, "name": item.name, "kind": item.kind}
                | {"direct": item.direct}
                for item in ordered
            ]
            if output == "json":
                continue
            if not readers:
                self.stdout.write(f"Database '{alias}': no view of {schema!r} reads {label}.")
                continue
            self.stdout.write(f"Database '{alias}': views of {schema!r} that read {label}:")
            for reader in ordered:
                how = "directly" if reader.direct else "through other views"
                self.stdout.write(f"  {reader.name} ({reader.kind}, {how})")
        if output == "json":
            self.stdout.write(json.dumps(found, indent=2))

    def render_table(
        self, alias: str, schema: str, snapshot: CatalogSnapshot, statuses: list[ViewStatus]
    ) -> None:
        generation = f" (generation {snapshot.generation})" if snapshot.generation else ""
        self.stdout.write(f"Database '{alias}', schema {schema!r}{generation}:")
        rows = [COLUMNS, *(self.cells(status) for status in statuses)]
        widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
        for position, row in enumerate(rows):
            line = "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
            if position == 0:
                self.stdout.write(line, self.style.MIGRATE_HEADING)
            elif statuses[position - 1].state != IN_SYNC:
                self.stdout.write(line, self.style.WARNING)
            else:
                self.stdout.write(line)
        counts = Counter(status.state for status in statuses)
        summary = ", ".join(f"{counts[state]} {state}" for state in STATE_ORDER if counts[state])
        self.stdout.write(f"{len(statuses)} view(s): {summary or 'none'}.")
        if any(status.state != IN_SYNC for status in statuses):
            self.stdout.write(
                f"Run `manage.py sync_views --database {alias}` to make the database match "
                "the code."
            )
        foreign = [f"{schema}.{status.name}" for status in statuses if not status.managed]
        if foreign:
            self.stdout.write(
                f"Not created by django-orm-views: {', '.join(foreign)}. A sync that changes "
                "views refuses to replace the schema until they are moved elsewhere.",
                self.style.WARNING,
            )
        self.render_working_schemas(snapshot)

    def render_working_schemas(self, snapshot: CatalogSnapshot) -> None:
        """The previous generation, and what interrupted syncs left behind."""
        keep = get_settings().keep_previous_seconds
        kept = snapshot.kept_previous(keep, time.time())
        if kept is not None and kept.replaced_at is not None:
            replaced = datetime.datetime.fromtimestamp(kept.replaced_at, tz=datetime.timezone.utc)
            until = replaced + datetime.timedelta(seconds=keep)
            self.stdout.write(
                f"Previous generation: {kept.name}, replaced at "
                f"{timezone.localtime(replaced):%Y-%m-%d %H:%M:%S %Z}, kept until "
                f"{timezone.localtime(until):%Y-%m-%d %H:%M:%S %Z} "
                "(`sync_views --rollback` swaps it back in)."
            )
        roles = {item.name: item.role for item in snapshot.working}
        for leftover in snapshot.schemas_to_drop(keep, time.time()):
            why = (
                "is older than ORM_VIEWS_KEEP_PREVIOUS_SECONDS (or not the newest)"
                if roles.get(leftover) == "previous"
                else "was left by an interrupted sync"
            )
            self.stdout.write(
                f"Schema {leftover} {why}; the next sync drops it.", self.style.NOTICE
            )

    @staticmethod
    def cells(status: ViewStatus) -> tuple[str, ...]:
        materialized = status.materialized
        populated = "-"
        if status.populated is not None:
            populated = "yes" if status.populated else "no"
        refresh = status.last_refresh
        if refresh is not None:
            when = timezone.localtime(refresh.started_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            last = when if refresh.succeeded else f"{when} (failed)"
            duration = f"{refresh.duration:.3f}s"
        else:
            last = "never" if materialized and status.state != MISSING else "-"
            duration = "-"
        return (
            status.name,
            status.kind,
            status.state,
            populated,
            "-" if status.rows is None else str(status.rows),
            "-" if status.size_bytes is None else human_size(status.size_bytes),
            last,
            duration,
            ",".join(option.partition("=")[0] for option in status.options) or "-",
            ",".join(status.grantees) or "-",
        )


def human_size(size: int) -> str:
    """``8192 bytes``, ``16 kB``, ``1.5 MB``: as PostgreSQL's pg_size_pretty, roughly."""
    if size < 10 * 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
