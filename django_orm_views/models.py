"""The package's own table: the history of materialized view refreshes.

Only the model lives here; recording and reading it is in :mod:`django_orm_views.history`.
"""

from __future__ import annotations

from django.db import models


class RefreshRecord(models.Model):
    """One refresh of one materialized view, successful or not."""

    view = models.CharField(max_length=63, help_text="The view's name in the views schema.")
    database = models.CharField(max_length=100, help_text="The alias the view lives on.")
    mode = models.CharField(
        max_length=16,
        help_text="concurrently, swap (rebuilt beside the live view) or blocking.",
    )
    started_at = models.DateTimeField()
    duration = models.FloatField(help_text="Seconds.")
    rows = models.BigIntegerField(null=True, blank=True)
    succeeded = models.BooleanField()
    error = models.TextField(blank=True, default="")
    generation = models.CharField(
        max_length=8,
        blank=True,
        default="",
        help_text="The generation of the views schema live after the refresh.",
    )

    class Meta:
        verbose_name = "materialized view refresh"
        indexes = [
            models.Index(
                fields=["database", "view", "-started_at"], name="orm_views_refresh_latest"
            ),
        ]

    def __str__(self) -> str:
        outcome = "ok" if self.succeeded else "failed"
        return f"{self.view} on {self.database} at {self.started_at:%Y-%m-%d %H:%M:%S} ({outcome})"
