"""What ``cryostash --version`` reports: this cryostash, the CRIU it would use (if one is
found quickly; none is not an error) and the catalog schema revision it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Versions:
    """Versions of cryostash, of CRIU (None when not found) and of the catalog schema."""

    cryostash: str
    criu: str | None
    criu_path: str | None
    schema: str

    def lines(self) -> list[str]:
        """The text form, one component per line."""
        criu = f"{self.criu} ({self.criu_path})" if self.criu else "not found"
        if self.criu_path and not self.criu:
            criu = f"unknown ({self.criu_path} did not report a version)"
        return [
            f"cryostash {self.cryostash}",
            f"CRIU {criu}",
            f"catalog schema {self.schema}",
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "cryostash": self.cryostash,
            "criu": {"version": self.criu, "path": self.criu_path},
            "catalog_schema": self.schema,
        }


def versions(criu_path: str | None) -> Versions:
    """Look CRIU up as a checkpoint would (``criu_path``, else the provisioned one, else
    ``PATH``); never raises for a missing or broken CRIU."""
    from cryostash import __version__
    from cryostash.catalog.revisions import HEAD_REVISION
    from cryostash.engines.criu_binary import default_prefix, locate_criu, prefix_criu_path

    try:
        located = locate_criu(criu_path, prefix_criu_path(default_prefix()))
        path, version = located.path, located.version
    except OSError:
        path, version = None, None
    return Versions(__version__, version, path, HEAD_REVISION)
