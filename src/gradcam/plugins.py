"""Plugins of other packages: the modules an entry-point group names, imported once (they register what
they bring on import: model sources in ``gradcam.sources``, metrics in ``gradcam.metrics``), as pytest finds
its plugins."""

from __future__ import annotations

from importlib.metadata import entry_points

from gradcam.errors import GradCAMError

_LOADED: set[str] = set()


def load_plugins(group: str, error: type[GradCAMError]) -> None:
    """Import every module of the entry-point ``group`` once; one that fails to import is an ``error``
    naming it, in one line, not a traceback."""
    if group in _LOADED:
        return
    _LOADED.add(group)
    for point in entry_points(group=group):
        try:
            point.load()
        except Exception as exc:  # noqa: BLE001 - another package's code: one line that names it
            raise error(f"the {group} plugin {point.name!r} ({point.value}) failed to load: "
                        f"{type(exc).__name__}: {exc}") from None
