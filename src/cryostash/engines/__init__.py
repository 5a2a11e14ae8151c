"""Checkpoint engines and their registry.

Engines register under the entry-point group ``cryostash.engines`` (``name =
"module:Class"``); ``criu``, ``runc``, ``podman`` and ``docker`` are also built in,
so they are found even when the installed package metadata is stale (e.g. an
editable install made before the entry point existed). Importing this package is
cheap: engine modules are imported, and entry points read, only when
:func:`get_engine` or :func:`engine_names` is called.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from cryostash.errors import EngineError, UsageError

if TYPE_CHECKING:
    from cryostash.engines.base import Engine

GROUP = "cryostash.engines"
#: Engines shipped with cryostash: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "criu": "cryostash.engines.criu:CriuEngine",
    "docker": "cryostash.engines.docker:DockerEngine",
    "podman": "cryostash.engines.podman:PodmanEngine",
    "runc": "cryostash.engines.runc:RuncEngine",
}

__all__ = ["BUILTIN", "GROUP", "check_restorable", "engine_names", "get_engine"]


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def engine_names() -> list[str]:
    """Names of every engine that :func:`get_engine` knows, sorted."""
    return sorted({*BUILTIN, *_entry_points()})


def _load(name: str, registered: dict[str, Any]) -> Any:
    """The engine factory: the entry point, else (or when it is stale) the built-in."""
    try:
        if name in registered:
            try:
                return registered[name].load()
            except (ImportError, AttributeError):
                if name not in BUILTIN:
                    raise
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"engine {name!r} cannot be loaded: {exc}") from exc


def check_restorable(recorded: str, requested: str, checkpoint: str) -> None:
    """Refuse to restore ``checkpoint`` (``TARGET/NAME``), made by the engine ``recorded``,
    with another engine ``requested`` when both are built in: a checkpoint of a built-in
    engine is restored by that engine only (CRIU's images, runc's, podman's archive,
    docker's checkpoint folder: each with its own side-file). Where either is a
    third-party engine, the engine decides (it reads what it finds).

    Raises:
        UsageError: ``checkpoint T/N was made by the criu engine: --engine podman cannot
            restore it (...)``.
    """
    if requested == recorded or requested not in BUILTIN or recorded not in BUILTIN:
        return
    raise UsageError(
        f"checkpoint {checkpoint} was made by the {recorded} engine: --engine {requested} "
        f"cannot restore it (each of the engines {', '.join(sorted(BUILTIN))} restores only "
        f"the checkpoints it made); restore it with --engine {recorded}, or without --engine"
    )


def _accepts_criu_path(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "criu_path" or p.kind is p.VAR_KEYWORD for p in params)


def get_engine(name: str, *, criu_path: str | None = None) -> Engine:
    """Construct the engine called ``name``.

    Args:
        name: engine name (``criu``, ``runc``, ``podman``, ``docker``, or any registered
            under ``cryostash.engines``).
        criu_path: CRIU binary to use, passed to engines whose constructor accepts
            ``criu_path`` (ignored by the others).

    Raises:
        UsageError: no engine has that name (the message lists those available).
        EngineError: the engine is registered but cannot be loaded or constructed.
    """
    from cryostash.engines.base import Engine

    registered = _entry_points()
    if name not in BUILTIN and name not in registered:
        known = ", ".join(sorted({*BUILTIN, *registered}))
        raise UsageError(f"unknown engine {name!r} (available: {known})")
    factory = _load(name, registered)
    try:
        engine = factory(criu_path=criu_path) if _accepts_criu_path(factory) else factory()
    except Exception as exc:
        raise EngineError(f"engine {name!r} cannot be constructed: {exc}") from exc
    if not isinstance(engine, Engine):
        raise EngineError(f"engine {name!r} does not implement the Engine interface")
    return engine
