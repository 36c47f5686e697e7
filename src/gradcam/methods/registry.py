"""A registry of methods: adding a method is one file with ``@register_method("name")``."""

from __future__ import annotations

import inspect
from typing import Callable

from ..errors import GradCAMError, OptionError, suggest

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator that makes a method available to create_method, the CLI and the web app."""

    def add(cls: type) -> type:
        if name in _METHODS:
            raise GradCAMError(f"method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return list(_METHODS)


def describe_methods() -> dict[str, str]:
    """Name -> first line of the method's docstring."""
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in _METHODS.items()}


def get_method(name: str) -> type:
    try:
        return _METHODS[name.lower()]
    except KeyError:
        raise OptionError(
            f"unknown method {name!r}; choose one of: {', '.join(_METHODS)}.{suggest(name, _METHODS)}"
        ) from None


def create_method(name: str, model, target_layer=None, **options):
    """An instance of the method ``name`` on ``model`` (used like :class:`gradcam.GradCAM`)."""
    return get_method(name)(model, target_layer, **options)


def method_options(name: str) -> set[str]:
    """The keyword options ``name`` accepts (its own and every method's)."""
    accepted = set()
    for cls in get_method(name).__mro__:
        if "__init__" in vars(cls):
            accepted |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                         if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return accepted
