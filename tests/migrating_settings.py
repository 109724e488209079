"""Settings for ``manage.py migrate`` runs of the migrate tests (tests/test_migrate.py).

A small project of its own: ``tests.migrating_app``, whose migrations alter, rename
and drop columns its views read, on the database named by ``DATABASE_URL`` (one the
test creates for itself). ``MIGRATING_APP_STAGE`` chooses the code: ``initial`` (as at
migration 0001) or ``final`` (as at the last migration), as a deploy would change it
together with its migrations.
"""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "django-orm-views-migrate-tests"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_orm_views",
    "tests.migrating_app",
]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

MIGRATING_APP_STAGE = os.environ.get("MIGRATING_APP_STAGE", "final")
ORM_VIEWS_SYNC_ON_MIGRATE = os.environ.get("ORM_VIEWS_SYNC_ON_MIGRATE") == "1"
