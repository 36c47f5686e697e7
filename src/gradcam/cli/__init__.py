"""The ``gradcam`` command: :mod:`.parser` (the arguments, with :mod:`.examples`), :mod:`.inputs` (what they name),
:mod:`.commands` (parse, plan, run, print), :mod:`.listings` (layers, models, methods) and :mod:`.concepts`
(Deep Feature Factorization's own command)."""

from gradcam.cli.commands import main
from gradcam.cli.parser import build_parser

__all__ = ["build_parser", "main"]
