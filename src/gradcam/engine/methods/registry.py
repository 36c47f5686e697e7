"""A registry of methods: adding a method is one file with ``@register_method("name")``."""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Callable, Sequence

from gradcam.errors import OptionError, suggest

_METHODS: dict[str, type] = {}  # case-folded name -> class (the class keeps the name as registered)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+\-]*")  # no dots, underscores or spaces: safe in file names
_RESERVED = {"all", "methods"}  # the CLI's "every method" and the name of the all-methods figure


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator that makes a method available to create_method, the CLI and the web app.

    Names are looked up case-insensitively; registering a name again replaces the method with a
    warning (so that ``importlib.reload`` of a method's module works)."""
    if (not isinstance(name, str) or not _NAME.fullmatch(name) or re.fullmatch(r"top\d+", name, re.I)
            or name.casefold() in _RESERVED):
        raise OptionError(f"method name {name!r}: use letters, digits, '+' and '-', starting with a letter "
                          f"(not top<N>, {' or '.join(sorted(_RESERVED))})")

    def add(cls: type) -> type:
        key = name.casefold()
        if key in _METHODS:
            warnings.warn(f"method {name!r} is registered again: the new class replaces "
                          f"{_METHODS[key].__module__}.{_METHODS[key].__qualname__}", stacklevel=2)
        cls.name = name
        _METHODS[key] = cls
        return cls

    return add


def list_methods() -> list[str]:
    """Names of the registered methods, as registered."""
    return [cls.name for cls in _METHODS.values()]


def describe_methods() -> dict[str, str]:
    """Name -> first line of the method's docstring."""
    return {cls.name: cls.info()["description"] for cls in _METHODS.values()}


def method_info(name: str) -> dict:
    """What the method needs and gives: needs_layer, single_layer, needs_linear_head, class_free,
    uses_gradients, output_kind ("heatmap" or "image") and its description."""
    return get_method(name).info()


def get_method(name: str) -> type:
    try:
        return _METHODS[str(name).casefold()]
    except KeyError:
        names = list_methods()
        raise OptionError(
            f"unknown method {name!r}; choose one of: {', '.join(names)}.{suggest(str(name), names)}"
        ) from None


def create_method(name: str, model, target_layer=None, **options):
    """An instance of the method ``name`` on ``model`` (used like :class:`gradcam.GradCAM`)."""
    unknown = sorted(set(options) - method_options(name))
    if unknown:
        raise OptionError(f"option {unknown[0]!r} is not taken by method {get_method(name).name!r}; "
                          f"it takes: {', '.join(sorted(method_options(name)))}")
    return get_method(name)(model, target_layer, **options)


def method_options(name: str) -> set[str]:
    """The keyword options ``name`` accepts (its own and every method's)."""
    accepted = set()
    for cls in get_method(name).__mro__:
        if "__init__" in vars(cls):
            accepted |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                         if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return accepted


def applicable_methods(names: Sequence[str], model, target_layer=None, x=None,
                       **options) -> tuple[list[str], list[tuple[str, str]]]:
    """Of ``names``, those that can explain ``model`` at ``target_layer`` on inputs like ``x`` (the
    model's probe image), and (name, reason) for each of the others."""
    usable, skipped = [], []
    for name in names:
        method = create_method(name, model, target_layer, **{k: v for k, v in options.items()
                                                             if k in method_options(name)})
        why = method.unsuitable(x)
        if why:
            skipped.append((method.name, why))
        else:
            usable.append(method.name)
    return usable, skipped
