"""The ``gradcam`` command: :mod:`.parser` (the arguments) and :mod:`.commands` (parse, plan, run, print)."""

from gradcam.cli.commands import main
from gradcam.cli.parser import build_parser

__all__ = ["build_parser", "main"]
