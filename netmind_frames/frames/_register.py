"""Registers ``df.netmind`` on Polars frames when Polars is imported, without importing it.

Importing Polars costs a few hundred milliseconds; a user of netmind_frames without Polars, or
with Polars installed but not used, should not pay that. So: if Polars is imported already,
register now; if it is installed but not imported, a one-shot import hook registers right
after ``import polars`` runs; if it is not installed, nothing happens (one ``find_spec``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["register_polars"]


def register_polars() -> None:
    """Register ``pl.DataFrame.netmind`` now, or as soon as Polars is imported."""
    if "polars" in sys.modules:
        _register()
    elif importlib.util.find_spec("polars") is not None:
        sys.meta_path.insert(0, _OnPolarsImport())


def _register() -> None:
    try:
        importlib.import_module(f"{__package__}._polars")
    except Exception as exc:  # never break the user's `import polars`
        warnings.warn(f"netmind_frames: df.netmind not registered on Polars: {exc}", stacklevel=2)


class _OnPolarsImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first ``import polars`` it lets the other finders find
    Polars and wraps the loader so the namespace is registered once Polars has loaded."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "polars":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot; and the lookup below must not find us
        spec = importlib.util.find_spec(fullname)
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            load(module)
            _register()

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


register_polars()
