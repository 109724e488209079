"""Views that tests/test_sync_faults.py and tests/test_standby.py add to test_project's,
in a subprocess only.

Never imported by the test process: the subprocesses those tests start import it after
``django.setup()``, and ``FAULT_VIEWS`` (comma-separated) chooses which classes it
declares:

- ``broken``: SQL that pglast parses but PostgreSQL refuses (an unknown column);
- ``slow``: a materialized view whose creation sleeps ``FAULT_VIEWS_SLOW_SECONDS``;
- ``added``: a cheap new view, so that a sync without ``--force`` has work to do;
- ``over_materialized``: a plain view over the materialized view shop_dailysales;
- ``revised``: a plain view whose SQL holds ``FAULT_VIEWS_REVISION`` (an int), so that
  syncs with different revisions each replace it.
"""

from __future__ import annotations

import os

from django_orm_views import PostgresMaterialisedViewMixin, PostgresViewFromSQL

CHOSEN = {name.strip() for name in os.environ.get("FAULT_VIEWS", "").split(",") if name.strip()}

if "broken" in CHOSEN:

    class BrokenTotals(PostgresViewFromSQL):
        prefix = "faults"
        database = "default"
        sql = "SELECT id, no_such_column FROM shop_order"


if "slow" in CHOSEN:
    SLOW_SECONDS = float(os.environ.get("FAULT_VIEWS_SLOW_SECONDS", "2"))

    class SlowBuild(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
        prefix = "faults"
        database = "default"
        sql = f"SELECT 1 AS id FROM pg_sleep({SLOW_SECONDS})"


if "added" in CHOSEN:

    class Added(PostgresViewFromSQL):
        prefix = "faults"
        database = "default"
        sql = "SELECT count(*) AS orders FROM shop_order"


if "over_materialized" in CHOSEN:

    class OverDailySales(PostgresViewFromSQL):
        prefix = "faults"
        database = "default"
        sql = "SELECT day, revenue FROM views.shop_dailysales"


if "revised" in CHOSEN:
    REVISION = int(os.environ.get("FAULT_VIEWS_REVISION", "0"))

    class Revised(PostgresViewFromSQL):
        prefix = "faults"
        database = "default"
        sql = f"SELECT {REVISION} AS revision, count(*) AS orders FROM shop_order"
