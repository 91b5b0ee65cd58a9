"""Registers ``df.netmind`` on pandas, Polars and Dask frames when they are imported, not before.

Importing pandas (with openai, which the accessor needs) costs about a second, Polars a few
hundred milliseconds; ``import netmind_frames`` and the CLI's quick commands (``--help``,
``list``) should not pay that. So, for each library: if it is imported already, register now;
if it is installed but not imported, a one-shot import hook registers right after its
``import`` runs; if it is not installed, nothing happens (one ``find_spec``). The contract
"importing netmind_frames registers df.netmind" holds in either order of the imports.

On pandas and Dask the hook registers a stand-in that imports the accessor on the first
``df.netmind``, not at once: the package's own modules import pandas too, and a hook that
imported the accessor (and the functional core behind it) while one of them is half-imported
would fail.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import importlib.machinery

__all__ = ["register_dask", "register_pandas", "register_polars"]


def register_pandas() -> None:
    """Register ``pd.DataFrame.netmind`` now, or as soon as pandas is imported."""
    _register_when_imported("pandas")


def register_polars() -> None:
    """Register ``pl.DataFrame.netmind`` now, or as soon as Polars is imported."""
    _register_when_imported("polars")


def register_dask() -> None:
    """Register ``ddf.netmind`` on Dask DataFrames now, or once ``dask.dataframe`` is imported."""
    _register_when_imported("dask.dataframe")


def _register_when_imported(library: str) -> None:
    if library in sys.modules:
        _register(library)
    # The top-level name only: find_spec of a submodule would import its package.
    elif importlib.util.find_spec(library.partition(".")[0]) is not None:
        sys.meta_path.insert(0, _OnImport(library))


def _register(library: str) -> None:
    try:
        if library == "pandas":
            import pandas as pd  # imported already: this only binds the name

            pd.api.extensions.register_dataframe_accessor("netmind")(_PandasNetmind)
        elif library == "dask.dataframe":
            from dask.dataframe.extensions import register_dataframe_accessor

            register_dataframe_accessor("netmind")(_DaskNetmind)
        else:
            importlib.import_module(f"{__package__}._polars")  # registers on import
    except Exception as exc:  # never break the user's `import pandas` / `import polars`
        warnings.warn(
            f"netmind_frames: df.netmind not registered on {library}: {exc}", stacklevel=2
        )


class _PandasNetmind:
    """``df.netmind`` (see ``netmind_frames.frames._accessor.NetmindAccessor``): builds the
    real accessor, importing it (and the library behind it) on first use."""

    def __new__(cls, frame: Any) -> Any:
        accessor = importlib.import_module(f"{__package__}._accessor").NetmindAccessor
        return accessor(frame)


class _DaskNetmind:
    """``ddf.netmind`` (see ``netmind_frames.frames._dask.DaskNetmind``), imported on first
    use, as on pandas."""

    def __new__(cls, frame: Any) -> Any:
        return importlib.import_module(f"{__package__}._dask").DaskNetmind(frame)


class _OnImport:
    """Finds nothing itself: on the first ``import LIBRARY`` it lets the other finders find
    the library and wraps the loader so the accessor is registered once the library has
    loaded.

    A meta path finder by its ``find_spec`` alone: subclassing ``importlib.abc.MetaPathFinder``
    would import importlib.abc, which brings importlib.resources, tempfile and shutil (a
    good part of the CLI's quick commands' start)."""

    def __init__(self, library: str) -> None:
        self.library = library

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.library:
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
            _register(fullname)

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


register_pandas()
register_polars()
register_dask()
