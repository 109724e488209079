from django.apps import AppConfig


class MigratingAppConfig(AppConfig):
    name = "tests.migrating_app"
    label = "migrating_app"
    default_auto_field = "django.db.models.BigAutoField"
