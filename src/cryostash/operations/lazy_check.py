"""``doctor``'s lazy-restore check: can ``restore --lazy`` run on this machine?

Lazy restore needs CRIU >= 4.2 with userfaultfd (``criu check --feature uffd-noncoop``)
and a FUSE mount of cryostash's own (``/dev/fuse``, root: ``mount(2)``): the check probes
both, mounting an empty view in a temporary folder and unmounting it. Optional: a
machine without it still restores, only not lazily.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryostash.config import Settings
from cryostash.engines.criu_lazy import lazy_support
from cryostash.operations.host_checks import Check
from cryostash.transfer.fusefs import FuseMount


def check_lazy(settings: Settings) -> Check:
    """Whether lazy restore works here (``lazy-restore``, optional); never raises."""
    from cryostash.engines import get_engine

    try:
        reason = lazy_support(get_engine("criu", criu_path=settings.criu_path))
    except Exception as exc:
        reason = f"cannot probe CRIU: {exc}"
    if reason is not None:
        return Check("lazy-restore", False, {"userfaultfd": False}, error=reason, optional=True)
    try:
        with tempfile.TemporaryDirectory(prefix="cryostash-fuse-") as folder:
            mount = FuseMount(Path(folder), {}, lambda name, offset, size: b"", threads=1)
            mount.mount()
            try:
                list(Path(folder).iterdir())
            finally:
                mount.unmount()
    except OSError as exc:
        error = f"lazy restore needs a FUSE mount (/dev/fuse, root): {exc}"
        return Check("lazy-restore", False, {"userfaultfd": True, "fuse": False}, error=error,
                     optional=True)
    return Check("lazy-restore", True, {"userfaultfd": True, "fuse": True}, optional=True)
