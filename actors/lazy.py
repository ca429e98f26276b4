"""A module imported on first attribute access, so that a process that never uses it never loads it.

``actors.vae`` holds both the VAE module (built in the driver) and its worker (run in the VAE's
actor).  With ``torch = LazyModule("torch")`` the driver can build the graph and start the worker
without importing torch (its import is 1.3 s of CPU here, competing with Ray's start-up, and the
driver's peak memory drops from about 446 to 313 MiB);
the worker's process imports it when its ``__init__`` first touches ``torch``.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name`` and imports it on first attribute access.

    Parameters
    ----------
    name : str
        The module's full name (``"torch"``, ``"actors.vae_core"``).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lazy_target: types.ModuleType | None = None

    def _load(self) -> types.ModuleType:
        if self._lazy_target is None:
            self._lazy_target = importlib.import_module(self.__name__)
        return self._lazy_target

    def __getattr__(self, attr: str) -> Any:
        # only attributes this proxy lacks reach here: everything the real module defines
        return getattr(self._load(), attr)

    @property
    def loaded(self) -> bool:
        """Whether the module has been imported (by this proxy or by anyone else)."""
        return self._lazy_target is not None or self.__name__ in sys.modules

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r} ({'loaded' if self.loaded else 'not loaded'})>"


def lazy_names(package: str, homes: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A package's PEP 562 ``__getattr__`` that imports each public name from its home module on first use.

    Parameters
    ----------
    package : str
        The package's name, for the error message.
    homes : dict
        Public name -> the module that defines it.
    namespace : dict
        The package's ``globals()``: a name, once imported, is kept there, so later lookups skip this.
    """

    def getattr_(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        namespace[name] = value
        return value

    return getattr_
