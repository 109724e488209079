"""A reader process for ``bench_reader_stall.py``: queries a view in a loop on its own
connection and records the start, duration and error (if any) of every query."""

from __future__ import annotations

import random
import time
from typing import Any

Sample = tuple[float, float, str | None]


def reader_loop(
    connect_kwargs: dict[str, Any],
    sql: str,
    max_id: int,
    ready: Any,
    stop: Any,
    results: Any,
) -> None:
    import psycopg2

    def connect() -> Any:
        connection = psycopg2.connect(**connect_kwargs)
        connection.autocommit = True
        with connection.cursor() as cursor:
            # Bounded even if something blocks for good.
            cursor.execute("SET statement_timeout = '300s'")
        return connection

    rng = random.Random(20240601)
    connection = connect()
    cursor = connection.cursor()
    for _ in range(200):  # warm the connection and the plan caches
        cursor.execute(sql, [rng.randint(1, max_id)])
        cursor.fetchall()
    samples: list[Sample] = []
    ready.set()
    while not stop.is_set():
        started = time.monotonic()
        error = None
        try:
            cursor.execute(sql, [rng.randint(1, max_id)])
            cursor.fetchall()
        except psycopg2.Error as exc:
            error = f"{type(exc).__name__}: {str(exc).strip()}"
        samples.append((started, time.monotonic() - started, error))
        if error is not None and connection.closed:
            connection = connect()
            cursor = connection.cursor()
    connection.close()
    results.put(samples)
