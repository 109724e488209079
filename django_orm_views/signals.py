"""Signals for monitoring: sent by syncs and refreshes.

- ``pre_sync(plan, database)``: a sync is about to change ``database``.
- ``post_sync(plan, result, database)``: a sync changed ``database``.
- ``post_refresh(view, database, duration, concurrently, mode, rows, started_at)``: a
  materialized view was refreshed; ``mode`` is ``"concurrently"``, ``"swap"`` (rebuilt
  beside the live view) or ``"blocking"``; ``duration`` is in seconds.
- ``refresh_failed(view, database, duration, mode, error, started_at)``: a refresh failed
  and the view kept its previous contents; ``error`` names the view and PostgreSQL's error.

The two refresh signals are sent robustly: a receiver that raises is logged (logger
``django_orm_views``) and the other views are still refreshed.
"""

from __future__ import annotations

from django.dispatch import Signal

pre_sync = Signal()
post_sync = Signal()
post_refresh = Signal()
refresh_failed = Signal()
