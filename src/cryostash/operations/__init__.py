"""Operations: one module per verb, each one public function ``verb(repository, request)``
over a :class:`~cryostash.repository.Repository` and a frozen request dataclass, returning
a typed result.

``create``, ``restore``, ``restore_lazy``, ``rm``, ``ls``, ``inspect``,
``inspect_contents``, ``diff``, ``prefetch``, ``verify`` (and ``verify_subset``), ``gc``,
``prune``, ``rebuild``, ``import_archive``, ``export_archive``, ``migrate`` (with
``migrate_report``, ``migrate_receive``, ``destination`` and ``destination_local``),
``events`` and ``doctor`` (with ``host_checks`` and ``lazy_check``). :data:`VERBS`
(:mod:`~cryostash.operations.verbs`) lists them all. Each module is imported on its own,
when its verb runs; this package imports nothing until ``VERBS`` is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryostash.operations.verbs import VERBS

__all__ = ["VERBS"]


def __getattr__(name: str) -> Any:
    if name == "VERBS":
        from cryostash.operations.verbs import VERBS

        return VERBS
    raise AttributeError(f"module 'cryostash.operations' has no attribute {name!r}")
