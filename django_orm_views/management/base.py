"""What the package's commands share: their version, and how they word verbosity."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from .. import __version__

__all__ = ["ViewsCommand"]


class ViewsCommand(BaseCommand):
    """A command of django-orm-views: ``--version`` prints the package's version (not
    Django's), and ``--help`` says what each verbosity level shows."""

    #: Appended to ``help``: what verbosity 0 to 3 show, for this command.
    verbosity_help = ""

    def get_version(self) -> str:
        return f"django-orm-views {__version__}"

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        if self.verbosity_help and self.verbosity_help not in self.help:
            self.help = f"{self.help} {self.verbosity_help}"
        return super().create_parser(prog_name, subcommand, **kwargs)
