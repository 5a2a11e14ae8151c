"""``doctor``: what works here and what does not.

Runs every check of :mod:`.host_checks` (CRIU, lazy restore (:mod:`.lazy_check`), the
other engines, the store, the catalog, the permissions of the local folders holding
process memory) and returns their :class:`~cryostash.operations.host_checks.Report`.
Never raises for a broken component: each check carries its own error text. (``doctor
--install`` first provides CRIU: :func:`cryostash.install.criu.provision`, called by the
front end.)
"""

from __future__ import annotations

from dataclasses import dataclass

from cryostash.operations.host_checks import (
    Report,
    check_catalog,
    check_criu,
    check_engines,
    check_private,
    check_store,
)
from cryostash.operations.lazy_check import check_lazy
from cryostash.repository import Repository


@dataclass(frozen=True)
class DoctorRequest:
    """Nothing to choose: every check runs (the repository's settings say what to check)."""


def doctor(repo: Repository, request: DoctorRequest) -> Report:
    """Run every check on the settings of ``repo`` (opens neither its catalog nor its
    stores: each check opens what it probes)."""
    settings = repo.settings
    return Report(
        (
            check_criu(settings),
            check_lazy(settings),
            *check_engines(settings),
            check_store(settings),
            check_catalog(settings),
            check_private(settings),
        )
    )
