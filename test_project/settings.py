"""Settings of the demo project, also used by the test suite.

The database comes from ``DATABASE_URL``. When it is unset, an embedded PostgreSQL is
started (see ``test_project/embedded_postgres.py``) and its URL exported, so that
``manage.py`` processes started from this one reuse the same server.

A second alias, ``warehouse``, holds the warehouse app's tables and views on the same
server (``test_project/databases.py``, ``test_project/routers.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url

from test_project import databases, embedded_postgres

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-dev-only-key-for-the-orm-views-demo-project"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_orm_views",
    "test_project.shop",
    "test_project.warehouse",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "test_project.urls"
WSGI_APPLICATION = "test_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Type checking imports these settings to read the models; it never connects, so it
# must not start a server either.
if "mypy" in sys.modules and not os.environ.get("DATABASE_URL"):
    DATABASE_URL = "postgresql://postgres@localhost/postgres"
else:
    DATABASE_URL = embedded_postgres.ensure_database_url()

DATABASES: dict[str, Any] = {"default": dj_database_url.parse(DATABASE_URL)}
# A second database on the same server, for the warehouse app and its views:
# <default NAME>_warehouse, or WAREHOUSE_DATABASE_URL.
if os.environ.get("WAREHOUSE_DATABASE_URL"):
    DATABASES["warehouse"] = dj_database_url.parse(os.environ["WAREHOUSE_DATABASE_URL"])
else:
    DATABASES["warehouse"] = databases.derived_database(DATABASES["default"])
    if "mypy" not in sys.modules:
        databases.create_if_missing(DATABASES["default"], DATABASES["warehouse"])
DATABASE_ROUTERS = ["test_project.routers.WarehouseRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# django-orm-views: every view that is not `hidden` is readable by this role.
ORM_VIEWS_GRANT_SELECT_TO = ["analytics"]
# How long a swap keeps the previous generation (the package's default: an hour); the
# tests and benchmarks set it per process.
ORM_VIEWS_KEEP_PREVIOUS_SECONDS = float(os.environ.get("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", "3600"))
