"""cryostash: checkpoint processes with CRIU into any fsspec store, catalogued in SQL.

The public API. Heavy modules (SQLAlchemy, fsspec) load on first use of the names
that need them, so ``import cryostash`` and ``cryostash --help`` stay fast.

    from cryostash import CheckpointManager, resolve_settings
    with CheckpointManager(resolve_settings()) as mgr:
        mgr.create("web", "before-upgrade", locator="1234", leave_running=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryostash.config import Settings, parse_storage_options, resolve_settings
from cryostash.errors import (
    CatalogError,
    CatalogNotFound,
    CheckpointExists,
    CheckpointNotFound,
    CryostashError,
    EngineError,
    IntegrityError,
    InvalidName,
    KeyRequired,
    SchemaOutdated,
    StorageError,
    StoreNotFound,
    UsageError,
    WrongKey,
)
from cryostash.names import validate_name, validate_target
from cryostash.types import CheckpointInfo, Event, RestoreResult, Status

if TYPE_CHECKING:
    from cryostash.manager import CheckpointManager
    from cryostash.manager.maintenance import collect_garbage, rebuild_catalog, verify_store
    from cryostash.operations.gc import GcReport
    from cryostash.operations.inspect import Inspection
    from cryostash.operations.rebuild import RebuildReport
    from cryostash.operations.verify import VerifyReport
    from cryostash.repository import Repository

__version__ = "0.1.0"

__all__ = [
    "CatalogError",
    "CatalogNotFound",
    "CheckpointExists",
    "CheckpointInfo",
    "CheckpointManager",
    "CheckpointNotFound",
    "CryostashError",
    "EngineError",
    "Event",
    "GcReport",
    "Inspection",
    "IntegrityError",
    "InvalidName",
    "KeyRequired",
    "RebuildReport",
    "Repository",
    "RestoreResult",
    "SchemaOutdated",
    "Settings",
    "Status",
    "StorageError",
    "StoreNotFound",
    "UsageError",
    "VerifyReport",
    "WrongKey",
    "collect_garbage",
    "parse_storage_options",
    "rebuild_catalog",
    "resolve_settings",
    "validate_name",
    "validate_target",
    "verify_store",
]

_LAZY = {
    "CheckpointManager": "cryostash.manager",
    "Repository": "cryostash.repository",
    "Inspection": "cryostash.operations.inspect",
    "verify_store": "cryostash.manager.maintenance",
    "VerifyReport": "cryostash.operations.verify",
    "collect_garbage": "cryostash.manager.maintenance",
    "GcReport": "cryostash.operations.gc",
    "rebuild_catalog": "cryostash.manager.maintenance",
    "RebuildReport": "cryostash.operations.rebuild",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cryostash' has no attribute {name!r}")
