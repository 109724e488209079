"""Programmatic declaration of the benchmark's views.

Two shapes, chosen by ``Spec.kind``:

``chains``
    ``views`` views in ``chains`` dependency chains over one base table. The first view
    of each chain (its root) reads the base table; the first ``materialized`` roots are
    materialized views with a unique index on ``id``. Every other view reads the view
    before it in its chain; every fourth one also joins the root of the next chain (so
    chains depend on each other), and every fourth one, shifted by two, filters with a
    literal ``%%`` (DB-API escaping, as users write it).

``stall``
    A materialized view over the whole base table (unique index on ``id``) and a plain
    view over it, which the reader of ``bench_reader_stall.py`` queries.

``snapshot``
    One materialized view over the whole base table (unique index on ``id``), which
    ``bench_snapshot_build.py`` rebuilds with ``sync_views(force=True)``.

Each view's SQL comes from a template with an ``{extra}`` slot after its select list, so
that a benchmark can change one view (``change_view``) between two syncs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_orm_views.views import BasePostgresView

SPEC_VARIABLE = "ORM_VIEWS_BENCH_SPEC"
PREFIX = "bench"
SCHEMA = "views"


@dataclass(frozen=True)
class Spec:
    kind: str = "chains"
    views: int = 200
    chains: int = 10
    materialized: int = 5
    base_table: str = "bench_base"

    def to_environment(self) -> dict[str, str]:
        return {SPEC_VARIABLE: json.dumps(asdict(self))}


def spec_from_environment() -> Spec:
    raw = os.environ.get(SPEC_VARIABLE)
    return Spec(**json.loads(raw)) if raw else Spec()


def base_table_statements(table: str, rows: int) -> list[str]:
    """Create ``public.<table>`` with ``rows`` rows (id, grp, val, payload)."""
    return [
        f"DROP TABLE IF EXISTS public.{table} CASCADE",
        f"CREATE TABLE public.{table} AS SELECT g AS id, g % 1000 AS grp, "
        f"(g % 97)::bigint AS val, left(md5(g::text), 8) AS payload "
        f"FROM generate_series(1, {int(rows)}) AS g",
        f"ALTER TABLE public.{table} ADD PRIMARY KEY (id)",
        f"ANALYZE public.{table}",
    ]


def chain_lengths(spec: Spec) -> list[int]:
    chains = max(1, min(spec.chains, spec.views))
    return [
        spec.views // chains + (1 if chain < spec.views % chains else 0) for chain in range(chains)
    ]


def class_name(chain: int, link: int) -> str:
    return f"C{chain:02d}V{link:03d}"


def view_name(chain: int, link: int) -> str:
    return f"{PREFIX}_{class_name(chain, link).lower()}"


def _chain_templates(spec: Spec) -> list[tuple[str, str, bool]]:
    """(class name, SQL template, materialized) in declaration order."""
    lengths = chain_lengths(spec)
    declared = []
    for chain, length in enumerate(lengths):
        for link in range(length):
            if link == 0:
                template = (
                    f"SELECT id, grp, val + {chain} AS val, payload{{extra}} "
                    f"FROM public.{spec.base_table}"
                )
                materialized = chain < spec.materialized
            else:
                previous = f"{SCHEMA}.{view_name(chain, link - 1)}"
                if link % 4 == 0:
                    other = f"{SCHEMA}.{view_name((chain + 1) % len(lengths), 0)}"
                    template = (
                        "SELECT a.id, a.grp, a.val + b.val AS val, a.payload{extra} "
                        f"FROM {previous} AS a JOIN {other} AS b ON b.id = a.id"
                    )
                elif link % 4 == 2:
                    template = (
                        "SELECT a.id, a.grp, a.val + 1 AS val, a.payload{extra} "
                        f"FROM {previous} AS a WHERE a.grp %% 7 <> 3"
                    )
                else:
                    template = (
                        "SELECT a.id, a.grp, a.val + 1 AS val, a.payload{extra} "
                        f"FROM {previous} AS a"
                    )
                materialized = False
            declared.append((class_name(chain, link), template, materialized))
    return declared


def _stall_templates(spec: Spec) -> list[tuple[str, str, bool]]:
    return [
        (
            "StallMv",
            f"SELECT id, grp, val, payload{{extra}} FROM public.{spec.base_table}",
            True,
        ),
        (
            "StallReader",
            f"SELECT id, grp, val * 2 AS doubled, payload{{extra}} FROM {SCHEMA}.{PREFIX}_stallmv",
            False,
        ),
    ]


def _snapshot_templates(spec: Spec) -> list[tuple[str, str, bool]]:
    return [
        (
            "SnapshotMv",
            f"SELECT id, grp, val, payload{{extra}} FROM public.{spec.base_table}",
            True,
        ),
    ]


def declare(spec: Spec, *, module: str) -> dict[str, type[BasePostgresView]]:
    """Create the view classes of ``spec``; returns them by view name."""
    # Imported here: the spec is read by the scripts before Django is set up.
    from django_orm_views.views import PostgresMaterialisedViewMixin, PostgresViewFromSQL

    if spec.kind == "chains":
        templates = _chain_templates(spec)
    elif spec.kind == "stall":
        templates = _stall_templates(spec)
    elif spec.kind == "snapshot":
        templates = _snapshot_templates(spec)
    else:
        raise ValueError(f"unknown benchmark spec kind {spec.kind!r}")
    declared: dict[str, type[BasePostgresView]] = {}
    for name, template, materialized in templates:
        attrs: dict[str, Any] = {
            "__module__": module,
            "__qualname__": name,
            "prefix": PREFIX,
            "sql": template.format(extra=""),
            "bench_template": template,
            # Documented as analysts would want them: a comment on the view and on a
            # column, and (plain views) security_barrier, so that the figures include
            # the work these take.
            "__doc__": f"Benchmark view {name}: one row an id of the base table.",
            "column_comments": {"id": "The base table's id."},
        }
        bases: tuple[type, ...] = (PostgresViewFromSQL,)
        if materialized:
            bases = (PostgresMaterialisedViewMixin, PostgresViewFromSQL)
            attrs["pk_field"] = "id"
        else:
            attrs["security_barrier"] = True
        view: type[BasePostgresView] = type(name, bases, attrs)
        declared[view.view_name] = view
    return declared


def change_view(view: type[BasePostgresView], revision: int) -> None:
    """Give ``view`` a new definition (an extra constant column), as an edit would."""
    view.sql = view.bench_template.format(extra=f", {int(revision)} AS revision")  # type: ignore[attr-defined]


def materialized_names(declared: dict[str, type[BasePostgresView]]) -> list[str]:
    return [name for name, view in declared.items() if view.is_materialized()]


def leaf_of_materialized_chain(spec: Spec) -> str:
    """The last view of chain 0 (whose root is materialized when any root is): a plain
    view that no other view reads."""
    length = chain_lengths(spec)[0]
    return view_name(0, length - 1)
