"""``manage.py sync_views``: make the views schema match the declared views."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from ...apply import check_roles
from ...conf import STRATEGIES
from ...diff import definition_diffs
from ...exceptions import ViewError
from ...sync import (
    SyncResult,
    databases_to_sync,
    plan_sync,
    prune_views,
    rollback_views,
    sync_views,
)
from ..base import ViewsCommand


class Command(ViewsCommand):
    verbosity_help = "Verbosity: 0 prints nothing, 1 a summary line for each database, 2 also a line for each view with its time, 3 also the SQL."
    help = "Create, replace and drop database views so that the views schema matches the code."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            choices=tuple(connections),
            help="Sync this database only (default: every database that has views).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; exit 1 when the database differs from the code.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the SQL a sync would run; change nothing."
        )
        parser.add_argument(
            "--diff",
            action="store_true",
            help="With --check or --dry-run: print a unified diff of each replaced view's "
            "definition in the database and as declared.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Rebuild every view, unchanged materialized views included.",
        )
        parser.add_argument(
            "--rollback",
            action="store_true",
            help="Swap the previous generation of the views back in (kept for "
            "ORM_VIEWS_KEEP_PREVIOUS_SECONDS after each swap); the generation it replaces "
            "becomes the previous one.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Drop the previous generation now, with the stored materialized views "
            "only it used.",
        )
        parser.add_argument(
            "--strategy",
            choices=STRATEGIES,
            help="swap (build beside the live views, then swap them in) or recreate "
            "(drop and recreate in one transaction). Default: ORM_VIEWS_SYNC_STRATEGY.",
        )
        parser.add_argument(
            "--grant-select-permissions-to-user",
            dest="grant_select_permissions_to_user",
            action="append",
            metavar="ROLE",
            help="Also grant USAGE on the schema and SELECT on every non-hidden view to ROLE "
            "(repeatable), besides ORM_VIEWS_GRANT_SELECT_TO.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity: int = options["verbosity"]
        if options["diff"] and not (options["check"] or options["dry_run"]):
            raise CommandError("--diff goes with --check or --dry-run, which change nothing.")
        self.refuse_mixed_generation_options(options)
        try:
            if options["rollback"] or options["prune"]:
                self.handle_generations(options)
                return
            if options["check"]:
                self.check_only(options)
                return
            report = sync_views(
                database=options["database"],
                strategy=options["strategy"],
                force=options["force"],
                dry_run=options["dry_run"],
                grant_select_permissions_to_user=options["grant_select_permissions_to_user"],
                time_each_view=verbosity >= 2,
            )
            diffs = [definition_diffs(result.plan) if options["diff"] else {} for result in report]
        except ViewError as error:
            raise CommandError(str(error)) from error
        for result, diff in zip(report, diffs, strict=True):
            self.render(result, verbosity)
            self.render_diff(diff)

    def refuse_mixed_generation_options(self, options: dict[str, Any]) -> None:
        if not (options["rollback"] or options["prune"]):
            return
        others = [
            f"--{name.replace('_', '-')}"
            for name in ("check", "dry_run", "diff", "force", "strategy")
            if options[name]
        ]
        if options["grant_select_permissions_to_user"]:
            others.append("--grant-select-permissions-to-user")
        if options["rollback"] and options["prune"]:
            others.insert(0, "--prune")
        if others:
            given = "--rollback" if options["rollback"] else "--prune"
            raise CommandError(
                f"{given} does not go with {', '.join(others)}: run it on its own (with "
                "--database to choose the database)."
            )

    def handle_generations(self, options: dict[str, Any]) -> None:
        aliases = [options["database"]] if options["database"] else databases_to_sync()
        for alias in aliases:
            if options["rollback"]:
                result = rollback_views(database=alias)
                if options["verbosity"] >= 1:
                    self.stdout.write(
                        f"Rolled back database '{alias}': generation {result.generation} is "
                        f"live again ({len(result.views)} views) in {result.duration:.2f}s; "
                        f"the generation it replaced is kept as {result.previous}.",
                        self.style.SUCCESS,
                    )
                continue
            done = prune_views(database=alias)
            if options["verbosity"] >= 1:
                for name in done.kept:
                    self.stdout.write(
                        f"Schema {name} is still in use (a reader, or another sync): the next "
                        "sync drops it.",
                        self.style.WARNING,
                    )
                dropped = ", ".join(done.dropped_schemas) or "nothing to drop"
                stored = (
                    f"; {len(done.dropped_stored)} stored view(s)" if done.dropped_stored else ""
                )
                self.stdout.write(
                    f"Pruned database '{alias}': {dropped}{stored}.", self.style.SUCCESS
                )

    def check_only(self, options: dict[str, Any]) -> None:
        aliases = [options["database"]] if options["database"] else databases_to_sync()
        differs = False
        for alias in aliases:
            plan = plan_sync(
                database=alias,
                strategy=options["strategy"],
                force=options["force"],
                grant_select_permissions_to_user=options["grant_select_permissions_to_user"],
            )
            if plan:
                # A sync of this plan would be refused: say so rather than list it.
                check_roles(connections[alias], plan)
                differs = True
                self.stdout.write(
                    f"Database '{alias}' differs from the declared views:", self.style.WARNING
                )
                for line in plan.describe():
                    self.stdout.write(f"  {line}")
                if options["diff"]:
                    self.render_diff(definition_diffs(plan))
            elif options["verbosity"] >= 1:
                self.stdout.write(f"Database '{alias}': views in sync.", self.style.SUCCESS)
        if differs:
            self.stdout.write("Run `manage.py sync_views` to apply these changes.")
            raise SystemExit(1)

    def render(self, result: SyncResult, verbosity: int) -> None:
        if result.dry_run:
            self.render_dry_run(result, verbosity)
            return
        if verbosity >= 2:
            for action in result.plan.actions:
                timing = result.view_timings.get(action.name)
                suffix = f" ({timing:.3f}s)" if timing is not None else ""
                verb = (
                    "update"
                    if action.kind.value == "keep" and action.is_change
                    else action.kind.value
                )
                self.stdout.write(f"  {verb:<7} {action.object_kind} {action.name}{suffix}")
        if verbosity >= 3:
            for statement in result.statements:
                self.stdout.write(f"    {statement};")
        if verbosity >= 1:
            self.render_generations(result, verbosity)
            style = self.style.SUCCESS if result.applied else self.style.NOTICE
            self.stdout.write(result.summary(), style)

    def render_generations(self, result: SyncResult, verbosity: int) -> None:
        """What the sync dropped after its work, and what it kept."""
        for leftover in result.dropped_leftovers:
            self.stdout.write(f"Dropped schema {leftover} left by an interrupted sync.")
        for previous in result.dropped_previous:
            self.stdout.write(f"Dropped the previous generation {previous}.")
        if result.previous_generation and verbosity >= 2:
            self.stdout.write(
                f"Kept the previous generation as {result.previous_generation} (for queries "
                "still reading it, and for --rollback)."
            )
        if result.kept_old_schema:
            self.stdout.write(
                f"Readers still use the previous views; schema {result.kept_old_schema} will "
                "be dropped by the next sync.",
                self.style.WARNING,
            )

    def render_diff(self, diffs: dict[str, list[str]]) -> None:
        for lines in diffs.values():
            for line in lines:
                style = None
                if line.startswith("+") and not line.startswith("+++"):
                    style = self.style.SUCCESS
                elif line.startswith("-") and not line.startswith("---"):
                    style = self.style.ERROR
                self.stdout.write(line, style)

    def render_dry_run(self, result: SyncResult, verbosity: int) -> None:
        if not result.statements:
            if verbosity >= 1:
                self.stdout.write(
                    f"-- Database '{result.database}': views in sync, nothing to run."
                )
            return
        self.stdout.write(f"-- Database '{result.database}': statements a sync would run")
        for statement in result.statements:
            self.stdout.write(f"{statement};")
