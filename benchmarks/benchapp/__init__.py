"""A Django app that only declares views, generated from a spec in the environment.

The benchmark scripts put a JSON spec in ``ORM_VIEWS_BENCH_SPEC`` before Django is set
up; ``benchapp.postgres_views`` (imported by django_orm_views' autodiscovery) turns it
into view classes with :func:`benchapp.catalog.declare`.
"""
