"""The registry of metrics: ``@register_metric("name", columns={...})`` on a class called as
``Metric(model, **options)(x, maps, targets)`` that returns per-sample values, so that ``gradcam evaluate``
builds its columns, its table and its ``--metrics`` choices from here. Each column says whether lower or
higher is better; the result is a mapping of column -> (B,) tensor, or an object whose ``per_sample()``
gives one. A result object may also offer curves: a method ``curves() -> dict[str, tuple[Tensor, Tensor]]``,
curve name -> (x values (P,), per-sample values (B, P)), which ``gradcam evaluate`` averages over the images
and draws in its report (deletion and insertion give theirs). Metrics of other packages come in through the
entry-point group ``gradcam.metrics`` (each entry point a module that registers its metrics on import)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from gradcam.errors import OptionError, suggest
from gradcam.plugins import load_plugins

ENTRY_POINTS = "gradcam.metrics"
DIRECTIONS = ("lower", "higher")


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric: its class, its kind and its columns (name -> "lower" or "higher" is better)."""

    name: str
    cls: type
    columns: dict
    kind: str = "faithfulness"
    default: bool = True  # among the metrics `gradcam evaluate` scores when none are named

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""

    def options(self) -> set[str]:
        """The keyword options its constructor takes (beyond the model), its bases' too while it passes
        ``**options`` on."""
        names: set[str] = set()
        for cls in self.cls.__mro__[:-1]:  # not object
            params = inspect.signature(cls.__init__).parameters.values()
            names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return names


_METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, *, columns: Mapping[str, str], kind: str = "faithfulness", default: bool = True):
    """Register a metric class under ``name`` with its ``columns`` ({column: "lower" | "higher"}, the
    direction that is better); ``default=False``: scored only when named (a costly one); registering a
    name again replaces it."""
    bad = {c: d for c, d in columns.items() if d not in DIRECTIONS}
    if not columns or bad:
        raise OptionError(f"register_metric({name!r}): columns must map each column to 'lower' or 'higher', "
                          f"got {dict(columns)}")

    def decorator(cls: type) -> type:
        _METRICS[name] = MetricInfo(name, cls, dict(columns), kind, default)
        cls.metric_name = name
        return cls

    return decorator


def list_metrics(kind: str | None = None, *, default: bool | None = None) -> list[str]:
    """The registered metrics' names (of one ``kind``: "faithfulness", …; ``default=True``: those scored
    when none are named), built-in ones first."""
    _load_plugins()
    return [name for name, info in _METRICS.items()
            if (kind is None or info.kind == kind) and (default is None or info.default == default)]


def metric_spec(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:protocol"`` (``deletion:rise``, ``road:pytorch-grad-cam``) -> (name, options)."""
    name, _, protocol = str(spec).partition(":")
    info = metric_info(name)
    if not protocol:
        return name, {}
    if "protocol" not in info.options():
        raise OptionError(f"metric {name!r} has one protocol; {spec!r} names another")
    return name, {"protocol": protocol}


def metric_info(name: str) -> MetricInfo:
    _load_plugins()
    if name not in _METRICS:
        raise OptionError(f"unknown metric {name!r}.{suggest(name, list(_METRICS))} Choose from {', '.join(_METRICS)}")
    return _METRICS[name]


def create_metric(name: str, model: nn.Module, **options: Any):
    """The metric ``name`` for ``model``; options it does not take are left out (``steps`` is deletion's)."""
    info = metric_info(name)
    taken = info.options()
    return info.cls(model, **{k: v for k, v in options.items() if k in taken})


def per_sample(name: str, result: Any) -> dict[str, torch.Tensor]:
    """The columns of metric ``name``'s result, each a (B,) tensor, checked."""
    values = result if isinstance(result, Mapping) else result.per_sample()
    columns = metric_info(name).columns
    missing = [c for c in columns if c not in values]
    if missing:
        raise OptionError(f"metric {name!r} gave no {', '.join(missing)} (it declares {', '.join(columns)})")
    return {c: torch.as_tensor(values[c]).reshape(-1) for c in columns}


def _load_plugins() -> None:
    load_plugins(ENTRY_POINTS, OptionError)
