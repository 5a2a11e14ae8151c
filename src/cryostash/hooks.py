"""TEST-ONLY crash points: the process kills itself (SIGKILL) at a named phase of a create.

``CRYOSTASH_TEST_CRASH_AT=PHASE`` makes :func:`crash_point` (called by the manager at
each phase below) send SIGKILL to the current process, as a power cut or the OOM
killer would: no ``finally`` block, no clean-up, no atexit. The crash tests use it to
prove the commit protocol (see ``docs/reliability.md``): whatever a crash leaves,
``ls`` shows no broken checkpoint, ``verify`` passes on what ``ls`` shows, ``gc``
converges and the name can be used again.

Never set the variable outside tests. When it is unset each point costs one
environment lookup and does nothing. A leaf module (imports nothing of cryostash), so
that any layer may call it.

Phases of ``CheckpointManager.create``, in order:

- ``after-dump``: the engine has written the image into scratch; nothing is uploaded.
- ``mid-upload``: the first chunk object is stored, the others are not (other upload
  threads may be halfway through theirs; on local disk, the others are temporary files).
  Called by :func:`cryostash.storage.chunkio.put_object`, and on local disk by
  :meth:`cryostash.storage.chunkio.DurableBatch.commit` after its first rename.
- ``after-upload``: every blob is stored; no manifest.
- ``after-manifest``: the manifest is written; the catalog row is still PENDING
  ("before the catalog commit").
- ``after-commit``: the row is COMMITTED; no event is recorded and scratch is not
  cleaned yet.
"""

from __future__ import annotations

import os
import signal

#: The environment variable naming the phase to crash at.
ENV = "CRYOSTASH_TEST_CRASH_AT"
#: Every phase :func:`crash_point` knows, in the order a create reaches them.
PHASES = ("after-dump", "mid-upload", "after-upload", "after-manifest", "after-commit")


def _armed(phase: str) -> bool:
    return os.environ.get(ENV) == phase


def crash_point(phase: str) -> None:
    """SIGKILL this process if ``CRYOSTASH_TEST_CRASH_AT`` is ``phase`` (test-only)."""
    if _armed(phase):
        os.kill(os.getpid(), signal.SIGKILL)
