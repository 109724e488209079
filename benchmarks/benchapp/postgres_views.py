"""The benchmark's views, declared from the spec in ``ORM_VIEWS_BENCH_SPEC``."""

from __future__ import annotations

from .catalog import declare, spec_from_environment

VIEWS = declare(spec_from_environment(), module=__name__)
