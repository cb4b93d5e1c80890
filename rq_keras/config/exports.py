"""Package namespaces whose names load on first use (PEP 562).

A package lists `name -> module` and gets a module `__getattr__` and
`__dir__`: importing the package loads none of the modules, and a name's
module is imported when the name is first looked up. This keeps `import
rq_keras` free of TensorFlow, and lets a Keras 3 process import the
Keras-agnostic modules of a package (`rq_keras.losses.rnc`) while its Keras 2
modules check the process's Keras when they load
(`rq_keras.config.keras_version.require_keras2`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    namespace: dict[str, Any], exports: Mapping[str, str], deprecated: bool = False
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for the package whose `globals()` is `namespace`.

    Each name of `exports` is imported from its module on first use and kept
    in the namespace (the next lookup does not reach `__getattr__`). Any other
    name is, with `deprecated`, looked up among the package's rq_keras 0.2
    names (which warn), else an AttributeError.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            if deprecated:
                from rq_keras._deprecated import module_getattr

                return module_getattr(package, stacklevel=3)(name)
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
