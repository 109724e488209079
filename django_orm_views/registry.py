"""Discovery of the declared views, lookup by name, validation and dependency order."""

from __future__ import annotations

import difflib
import graphlib
import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.apps import apps
from django.db import connections

from .conf import POSTGRES_MAX_IDENTIFIER_BYTES, role_name_problem
from .exceptions import (
    DependencyCycleError,
    InvalidViewError,
    MissingDependencyError,
    UnknownViewError,
    ViewDiscoveryError,
)
from .views import (
    VIEW_OPTIONS,
    BasePostgresView,
    PostgresMaterialisedViewMixin,
    declared_classes,
    describe,
)

MODULE_NAME = "postgres_views"


def autodiscover() -> None:
    """Import every installed app's ``postgres_views`` module (a file or a package).

    A missing module is skipped; any error raised while importing one that exists
    surfaces with the module's name.
    """
    for app_config in apps.get_app_configs():
        module_name = f"{app_config.name}.{MODULE_NAME}"
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise ViewDiscoveryError(
                f"Importing {module_name} failed: {error}. Fix the import in that module."
            ) from error
        except Exception as error:
            raise ViewDiscoveryError(
                f"Importing {module_name} failed: {type(error).__name__}: {error}. "
                "Fix the error in that module."
            ) from error


def all_views() -> list[type[BasePostgresView]]:
    """Every concrete declared view class, in declaration order."""
    seen: set[type[BasePostgresView]] = set()
    views = []
    for view in declared_classes:
        if view in seen or view.is_abstract():
            continue
        seen.add(view)
        views.append(view)
    return views


def views_for_database(database: str) -> list[type[BasePostgresView]]:
    return [view for view in all_views() if view.database == database]


def databases_with_views() -> list[str]:
    """Aliases that have at least one declared view, in settings order."""
    wanted = {view.database for view in all_views()}
    return [alias for alias in connections if alias in wanted]


@dataclass(frozen=True)
class Problem:
    """A declaration problem: shown by ``manage.py check`` and raised by a sync."""

    id: str
    view: type[BasePostgresView]
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.message} {self.hint}"


def find_problems(
    views: Iterable[type[BasePostgresView]] | None = None, *, check_sql: bool = True
) -> list[Problem]:
    """Check the declarations without touching the database.

    ``check_sql=False`` skips evaluating each view's SQL (the sync renders it right
    after, and a view's ``sql`` or ``get_queryset`` is evaluated once per sync).
    """
    views = list(all_views() if views is None else views)
    problems: list[Problem] = []
    by_name: dict[tuple[str, str], type[BasePostgresView]] = {}
    for view in views:
        label = describe(view)
        name = view.view_name
        if len(name.encode()) > POSTGRES_MAX_IDENTIFIER_BYTES:
            problems.append(
                Problem(
                    "orm_views.E002",
                    view,
                    f"View {label} is named {name!r}, longer than PostgreSQL's "
                    f"{POSTGRES_MAX_IDENTIFIER_BYTES} bytes.",
                    "Shorten the class name or its `prefix`.",
                )
            )
        other = by_name.setdefault((view.database, name), view)
        if other is not view:
            problems.append(
                Problem(
                    "orm_views.E003",
                    view,
                    f"Views {describe(other)} and {label} both map to the view name "
                    f"{name!r} on database {view.database!r}.",
                    "Rename one of the classes or give it a different `prefix`.",
                )
            )
        if view.database not in connections:
            problems.append(
                Problem(
                    "orm_views.E004",
                    view,
                    f"View {label} sets `database` = {view.database!r}, which is not in "
                    "settings.DATABASES.",
                    f"Use one of: {', '.join(connections)}.",
                )
            )
        if getattr(view, "pk_field", None) and not issubclass(view, PostgresMaterialisedViewMixin):
            problems.append(
                Problem(
                    "orm_views.E005",
                    view,
                    f"View {label} sets `pk_field` but is not a materialized view.",
                    "Add PostgresMaterialisedViewMixin first in its bases, or remove `pk_field`.",
                )
            )
        problems += _dependency_problems(view)
        problems += _analyst_problems(view)
        if check_sql:
            try:
                view.get_sql_and_params()
            except InvalidViewError as error:
                problems.append(Problem("orm_views.E001", view, str(error), ""))
    return problems


def _analyst_problems(view: type[BasePostgresView]) -> list[Problem]:
    """E007-E009: grants, options and column comments declared for analysts."""
    label = describe(view)
    problems = []
    roles = view.grant_select_to
    if isinstance(roles, str) or not all(isinstance(role, str) for role in roles):
        problems.append(
            Problem(
                "orm_views.E009",
                view,
                f"View {label} sets `grant_select_to` = {roles!r}, not a list of role names.",
                'Use a list of role names, e.g. grant_select_to = ["analytics"].',
            )
        )
    elif roles and view.hidden:
        problems.append(
            Problem(
                "orm_views.E007",
                view,
                f"View {label} is hidden (no grants at all) but sets `grant_select_to`.",
                "Remove `hidden = True`, or remove `grant_select_to`.",
            )
        )
    else:
        problems += [
            Problem(
                "orm_views.E009",
                view,
                f"View {label}: `grant_select_to` names a role that cannot exist: {problem}.",
                "Give the exact name of an existing role (at most 63 bytes, no NUL).",
            )
            for problem in filter(None, map(role_name_problem, roles))
        ]
    for option in VIEW_OPTIONS:
        value = getattr(view, option, False)
        if value is not True and value is not False:
            problems.append(
                Problem(
                    "orm_views.E008",
                    view,
                    f"View {label} sets `{option}` = {value!r}, not True or False.",
                    f"Set `{option} = True` or remove it.",
                )
            )
        elif value and issubclass(view, PostgresMaterialisedViewMixin):
            problems.append(
                Problem(
                    "orm_views.E008",
                    view,
                    f"View {label} is a materialized view and sets `{option}`, an option "
                    "of plain views only.",
                    f"Remove `{option}`, or make the view a plain one.",
                )
            )
    comments = view.column_comments
    if not isinstance(comments, Mapping) or not all(
        isinstance(key, str) and isinstance(text, str) for key, text in comments.items()
    ):
        problems.append(
            Problem(
                "orm_views.E009",
                view,
                f"View {label} sets `column_comments` = {comments!r}, not a dict of "
                "column names to texts.",
                'Use e.g. column_comments = {"email": "Masked: only the domain is kept."}.',
            )
        )
    return problems


def _dependency_problems(view: type[BasePostgresView]) -> list[Problem]:
    """E006: what ``view_dependencies`` lists must be concrete views of the same database."""
    label = describe(view)
    problems = []
    # Declared types say "view classes"; what users write may be anything.
    dependencies: Sequence[object] = view.view_dependencies
    for dependency in dependencies:
        if not (isinstance(dependency, type) and issubclass(dependency, BasePostgresView)):
            message = (
                f"View {label} lists {dependency!r} in `view_dependencies`, which is not a "
                "view class."
            )
            hint = "List view classes only."
        elif dependency.is_abstract():
            message = (
                f"View {label} lists the abstract class {describe(dependency)} in "
                "`view_dependencies`."
            )
            hint = "List concrete view classes only."
        elif dependency.database != view.database:
            message = (
                f"View {label} (database {view.database!r}) depends on "
                f"{describe(dependency)} (database {dependency.database!r})."
            )
            hint = "A view can only depend on views of its own database."
        else:
            continue
        problems.append(Problem("orm_views.E006", view, message, hint))
    return problems


def raise_for_problems(views: Iterable[type[BasePostgresView]], *, check_sql: bool = True) -> None:
    problems = find_problems(views, check_sql=check_sql)
    if problems:
        raise InvalidViewError("\n".join(str(problem).strip() for problem in problems))


def dependency_order(
    dependencies: Mapping[str, Iterable[str]],
    classes: Mapping[str, type[BasePostgresView]],
    schema: str,
) -> list[str]:
    """Names in an order where every view comes after the views it reads; ties are broken
    by name so the order never changes between runs.

    A reference to a view that no class declares, and a cycle, raise errors that name
    the classes involved.
    """
    for name in sorted(dependencies):
        for dependency in sorted(dependencies[name]):
            if dependency not in classes:
                close = difflib.get_close_matches(
                    dependency, [n for n in classes if n != name], n=1
                )
                hint = (
                    f" Did you mean {close[0]!r} ({describe(classes[close[0]])})?" if close else ""
                )
                raise MissingDependencyError(
                    f"View {describe(classes[name])} reads {schema}.{dependency}, but no "
                    f"view class on database {classes[name].database!r} is named "
                    f"{dependency!r}.{hint} Declare that view, or fix the SQL."
                )
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(dependencies):
        sorter.add(name, *sorted(dependencies[name]))
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle: list[str] = list(error.args[1])
        path = " -> ".join(describe(classes[name]) for name in cycle)
        raise DependencyCycleError(
            f"Views depend on each other in a cycle: {path}. Remove one of these "
            "dependencies (in `view_dependencies` or in the SQL)."
        ) from error
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def find_view(label: str, database: str | None = None) -> type[BasePostgresView]:
    """A declared view by its view name or ``app_label.ClassName``."""
    candidates = all_views() if database is None else views_for_database(database)
    labels: dict[str, type[BasePostgresView]] = {}
    for view in candidates:
        labels[view.view_name] = view
        app_config = apps.get_containing_app_config(view.__module__)
        if app_config is not None:
            labels[f"{app_config.label}.{view.__name__}"] = view
    if label in labels:
        return labels[label]
    lowered = {key.lower(): value for key, value in labels.items()}
    if label.lower() in lowered:
        return lowered[label.lower()]
    close = difflib.get_close_matches(label, list(labels), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    where = f" on database {database!r}" if database else ""
    raise UnknownViewError(
        f"No declared view is named {label!r}{where}.{hint} Give a view name "
        "(e.g. shop_dailysales) or app_label.ClassName; `manage.py list_views` lists them."
    )
