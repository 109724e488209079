"""Signals for monitoring: sent by syncs and refreshes.

- ``pre_sync(plan, database)``: a sync is about to change ``database``.
- ``post_sync(plan, result, database)``: a sync changed ``database``.
- ``post_refresh(view, database, duration, concurrently)``: a materialized view was refreshed.
"""

from __future__ import annotations

from django.dispatch import Signal

pre_sync = Signal()
post_sync = Signal()
post_refresh = Signal()
