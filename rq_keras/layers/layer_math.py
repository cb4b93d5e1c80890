"""What every Keras-agnostic layer math class shares with its skins.

A layer's math (`DecoderMath`, `CodeEncoderMath`, `MLPEncoderMath`) is a
`LayerMath`: its `_configure` names and checks the layer's settings, its
`_settings` returns them for `get_config`. A skin is `class X(Math,
<Keras>.layers.Layer)` with its Keras module as `_keras`; this class gives it
the constructor (the settings go to `_configure`, the rest to the Keras
`Layer`) and `get_config`, so the two Keras versions of a layer differ only
in what is Keras' own.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["LayerMath"]


class LayerMath:
    """The shared constructor and `get_config` of a layer's math (see the module doc).

    Subclasses give `_configure(*args, **settings)` and `_settings()`; a skin
    may set `_layer_defaults` (Keras `Layer` arguments' defaults) and
    override `_check_skin(settings)` (run first, before anything is built).
    """

    _keras: Any = None
    _layer_defaults: dict[str, Any] = {}

    def __init__(self, *args, **kwargs):
        names = inspect.signature(self._configure).parameters
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        self._check_skin(settings)
        super().__init__(**{**self._layer_defaults, **kwargs})
        self._configure(*args, **settings)

    def _check_skin(self, settings: dict[str, Any]) -> None:
        """Raises where this skin cannot run the layer with these settings."""

    def _configure(self, *args, **settings) -> None:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), **self._settings()}
