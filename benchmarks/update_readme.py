"""Rewrite the "Results" section of benchmarks/README.md from benchmarks/results/*.json.

Run by ``make bench`` after the scripts; ``--check`` only prints the section.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def load(script: str) -> dict[str, Any] | None:
    path = BENCH_DIR / "results" / f"{script}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def errors(figure: dict[str, Any]) -> str:
    count, failed = figure["errors"], figure.get("sync_failures", 0)
    text = f"{count} reader error{'' if count == 1 else 's'}"
    return text + (f", {failed} failed sync{'' if failed == 1 else 's'}" if failed else "")


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


Row = tuple[str, str, str, str, str]


def run_note(data: dict[str, Any]) -> str:
    env = data["environment"]
    return (
        f"`{data['script']}` {env['date']}, commit {env['commit']}"
        f"{' + uncommitted changes' if env.get('package_has_uncommitted_changes') else ''}, "
        f"PostgreSQL "
        f"{env['postgresql'].split()[0]}, {env['cpus']} CPUs, load average "
        f"{env['load_average_at_start'][0]} at start, "
        f"{env.get('load_average_at_end', ['?'])[0]} at end"
    )


def _bench_reader_stall_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    floor = f["floor_idle_reader_median_ms"]
    swap, recreate, keep = f["swap"], f["recreate"], f["swap-keep"]
    rows: list[Row] = [
        (
            "Reader stall, swap (`force=True`)",
            f"max {ms(swap['max_ms'])} (worst {ms(swap['worst_max_ms'])}); "
            f"median {ms(swap['median_ms'])}; {errors(swap)}",
            f"idle reader query {ms(floor)}",
            f"{swap['max_ms'] / floor:,.0f}x the idle query; "
            f"{f['swap_vs_recreate_max_ratio']:.3f}x recreate's stall",
            "<= 50 ms, 0 errors: "
            + met(swap["max_ms"] <= 50 and swap["errors"] == 0 and not swap.get("sync_failures")),
        ),
        (
            "Reader stall, recreate (`force=True`)",
            f"max {ms(recreate['max_ms'])} (worst {ms(recreate['worst_max_ms'])}); "
            f"median {ms(recreate['median_ms'])}; {errors(recreate)}",
            f"idle reader query {ms(floor)}",
            f"{recreate['max_ms'] / floor:,.0f}x; sync took {ms(recreate['sync_ms'])}",
            "(the whole rebuild)",
        ),
        (
            "Reader stall, swap keeping the materialized view",
            f"max {ms(keep['max_ms'])} (worst {ms(keep['worst_max_ms'])}); {errors(keep)}",
            f"idle reader query {ms(floor)}",
            f"{keep['max_ms'] / floor:,.0f}x",
            "(information)",
        ),
    ]
    return rows


def _bench_sync_200_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    trips = max(f["noop_round_trips"], f.get("noop_driver_round_trips", 0))
    rows: list[Row] = [
        (
            "No-op sync, 200 views",
            f"{ms(f['noop_sync_ms'])}; {f['noop_round_trips']} round trip(s) "
            f"({f.get('noop_driver_round_trips', '?')} at the driver)",
            f"catalog read {ms(f['noop_floor_catalog_read_ms'])}",
            f"{f['noop_vs_floor_ratio']:.1f}x the floor; "
            f"{f['noop_vs_full_sync_ratio']:.2f}x a full sync",
            f"<= 50 ms: {met(f['noop_sync_ms'] <= 50)}; <= 3 round trips: {met(trips <= 3)}",
        ),
        (
            "Full sync, 200 views (swap)",
            ms(f["full_sync_ms"]),
            f"same DDL via psycopg2 {ms(f['full_sync_floor_psycopg2_ms'])}",
            f"{f['full_sync_vs_floor_ratio']:.2f}x "
            f"({f['full_sync_ms'] / f['full_sync_floor_psycopg_ms']:.2f}x psycopg 3's)",
            f"<= 1.3x: {met(f['full_sync_vs_floor_ratio'] <= 1.3)}",
        ),
    ]
    return rows


def _bench_changed_view_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    return [
        (
            f"One changed plain view, 5 materialized views x {data['parameters']['rows']:,} rows",
            f"{ms(f['changed_view_sync_ms'])}; {f['materialized_repopulated']} "
            "materialized views repopulated",
            f"full sync {ms(f['full_sync_ms'])}; by hand {ms(f['changed_view_floor_ms'])}",
            f"{f['changed_view_sync_pct_of_full']:.1f}% of the full sync; "
            f"{f['changed_view_vs_floor_ratio']:,.0f}x by hand",
            f"<= 10%, 0 repopulated: {met(f['changed_view_sync_pct_of_full'] <= 10 and f['materialized_repopulated'] == 0)}",
        )
    ]


def _bench_snapshot_build_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    old = f["old_snapshot_rows"]
    return [
        (
            f"Materialized view build, {data['parameters']['rows']:,} rows + unique index: "
            "WITH NO DATA + REFRESH",
            f"{ms(f['no_data_refresh_ms'])}; `sync_views(force=True)` "
            f"{ms(f['sync_force_ms'])}; an older REPEATABLE READ snapshot reads "
            f"{old['no_data_refresh']:,} rows (sync: {old['sync_force']:,})",
            f"CREATE ... WITH DATA {ms(f['with_data_floor_ms'])} "
            f"(older snapshot reads {old['with_data']:,} rows)",
            f"{f['no_data_refresh_vs_floor_ratio']:.2f}x; sync "
            f"{f['sync_force_vs_floor_ratio']:.2f}x",
            f"<= 1.3x: {met(f['no_data_refresh_vs_floor_ratio'] <= 1.3)}",
        )
    ]


def _bench_memory_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    rows: list[Row] = []
    floor = f["floor_setup_maxrss_mb"]
    for name, label in (("sync", "full"), ("noop", "no-op"), ("force", "--force")):
        rows.append(
            (
                f"Peak RSS, `manage.py sync_views` ({label}), 200 views",
                f"{f[name]['maxrss_mb']:.1f} MB",
                f"Django set up only {floor:.1f} MB",
                f"{f[name]['vs_floor_ratio']:.2f}x (+{f[name]['over_floor_mb']:.1f} MB)",
                "(no target)",
            )
        )
    return rows


def _bench_standby_rows(data: dict[str, Any]) -> list[Row]:
    f = data["figures"]
    rows: list[Row] = []
    labels = {"0": "previous generation dropped at once", "3600": "previous generation kept"}
    for keep, label in labels.items():
        readers = f["readers"][keep]
        lag = readers["max_lag_s"] * 1000
        longest = readers["max_s"] * 1000
        rows.append(
            (
                f"Hot standby readers, {readers['syncs']} syncs + {readers['refreshes']} "
                f"refreshes on the primary, {label}",
                f"longest query {ms(longest)}; {readers['errors']} reader errors",
                f"replay lag, longest {ms(lag)}",
                f"{longest / (50 + lag):.2f}x the target",
                f"0 errors, <= 50 ms + lag: {met(readers['errors'] == 0 and longest <= 50 + lag)}",
            )
        )
    seconds = data["parameters"].get("long_seconds", "?")
    for keep, label in labels.items():
        long = f["long_queries"][keep]
        outcomes = long["queries"]
        completed = sum(1 for query in outcomes.values() if query["completed"])
        rows.append(
            (
                f"A {seconds}-second standby query across a sync "
                f"(max_standby_streaming_delay 2s), {label}",
                "; ".join(f"{name}: {query['outcome']}" for name, query in outcomes.items()),
                f"sync {ms(long['sync_s'] * 1000)}, replay lag {ms(long['lag_s'] * 1000)}",
                f"{completed} of {len(outcomes)} completed",
                "all complete: " + met(completed == len(outcomes))
                if keep != "0"
                else "(information: what dropping it at once does)",
            )
        )
    if rollback := f.get("rollback"):
        took = rollback["rollback_median_s"] * 1000
        rows.append(
            (
                "`sync_views --rollback`, 200 views, readers on the primary",
                f"{ms(took)}; {rollback['errors']} reader errors, longest query "
                f"{ms(rollback['max_s'] * 1000)}",
                f"a sync with one change {ms(rollback['sync_median_s'] * 1000)}",
                f"{took / (rollback['sync_median_s'] * 1000):.2f}x the sync",
                f"<= 100 ms, 0 errors: {met(took <= 100 and rollback['errors'] == 0)}",
            )
        )
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "bench_reader_stall": _bench_reader_stall_rows,
    "bench_sync_200": _bench_sync_200_rows,
    "bench_changed_view": _bench_changed_view_rows,
    "bench_snapshot_build": _bench_snapshot_build_rows,
    "bench_memory": _bench_memory_rows,
    "bench_standby": _bench_standby_rows,
}


def section() -> str:
    rows: list[Row] = []
    runs: list[str] = []
    for script, rows_of in ROWS.items():
        if data := load(script):
            runs.append(run_note(data))
            rows += rows_of(data)
    if not rows:
        return "Not measured yet: run `make bench`."
    lines = [
        "Medians of the last `make bench` (written by `benchmarks/update_readme.py` from",
        "`benchmarks/results/*.json`).",
        "",
        "| figure | median | floor | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
        "Runs:",
        "",
        *(f"- {run}" for run in runs),
    ]
    return "\n".join(lines)


def main() -> None:
    text = section()
    if "--check" in sys.argv:
        print(text)
        return
    readme = README.read_text()
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{START}\n{text}\n{END}{after}")
    print(f"updated {README.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
