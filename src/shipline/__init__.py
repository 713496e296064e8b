"""shipline: a self-hosted continuous-delivery orchestrator.

The public API is loaded lazily so that `shipline --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "shipline.domain.models",
    "ConfigError": "shipline.errors",
    "Environment": "shipline.domain.models",
    "Masker": "shipline.domain.masking",
    "SecretStore": "shipline.domain.ports",
    "Service": "shipline.domain.models",
    "ShiplineError": "shipline.errors",
    "Workspace": "shipline.engine.workspace",
    "load_config": "shipline.config.loader",
}

__all__ = [
    "Config",
    "ConfigError",
    "Environment",
    "Masker",
    "SecretStore",
    "Service",
    "ShiplineError",
    "Workspace",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shipline' has no attribute {name!r}")
    return getattr(import_module(module), name)
