"""What CRIU's terse errors mean here, and what to do about them.

:func:`explain` maps the first error of a failed CRIU run (as
:func:`cryostash.engines.criu.failure_message` picks it) to a sentence that names the
cause and the remedy, for the errors whose cause is not obvious from CRIU's words. The
table is small on purpose: only errors seen in practice, each with a remedy that works.
"""

from __future__ import annotations

import re

#: (pattern of CRIU's first error, explanation). The first match wins.
HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"mnt: Can't create a temporary directory: Read-only file system"),
        "the container's root file system is read-only and has no /tmp folder: CRIU "
        "restores a container by pivoting into its root and needs an existing /tmp "
        "folder there to do so. Add an empty /tmp folder to the image (for runc: "
        "`mkdir BUNDLE/rootfs/tmp`; in a Dockerfile: `RUN mkdir -p /tmp`), or restore "
        "with a writable root (\"readonly\": false in the bundle's config.json)",
    ),
)


def explain(first_error: str) -> str | None:
    """The explanation of CRIU's ``first_error``, or None when there is none to give."""
    for pattern, text in HINTS:
        if pattern.search(first_error):
            return text
    return None
