"""Restore one checkpoint in this process and report its peak memory (run as a script).

``python peak_prog.py STORE CATALOG SCRATCH TARGET NAME OUT`` imports everything a
restore uses, reads the process's high-water mark of resident memory (``VmHWM`` of
``/proc/self/status``) as the baseline, restores ``TARGET/NAME`` with the fake engine
into the folder ``OUT``, and prints one JSON line: ``baseline_kib``, ``peak_kib``,
``error`` (the error's class name, or null) and ``message``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def high_water_kib() -> int:
    """``VmHWM`` of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> int:
    store, catalog, scratch, target, name, out = argv
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import blake3  # noqa: F401  (imported before the baseline: not the restore's memory)
    import zstandard  # noqa: F401

    from cryostash import Settings
    from cryostash.errors import CryostashError
    from tests.support.fake_engine import FakeManager

    settings = Settings(
        store_url=store, catalog_url=catalog, scratch_dir=Path(scratch), host="host-a"
    )
    with FakeManager(settings) as mgr:
        mgr.list()  # catalog open: its memory is part of the baseline
        baseline = high_water_kib()
        error: CryostashError | None = None
        try:
            mgr.restore(target, name, engine_args=[out])
        except CryostashError as exc:
            error = exc
    result = {
        "baseline_kib": baseline,
        "peak_kib": high_water_kib(),
        "error": type(error).__name__ if error else None,
        "message": str(error) if error else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
