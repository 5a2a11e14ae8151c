"""A toy third-party cryostash engine, installed as a real package by the tests
(``tests/support/engine_rigs.py``): the "process" is a state file ``$TOY_ROOT/<locator>.txt``.

A dump copies it into the image (and removes it unless ``--leave-running``); a file whose
text starts with ``unfreezable`` cannot be dumped (a partial image is left for cryostash
to clean up); a restore writes it back under the recorded name or ``--as``, refusing one
that exists (the "process" is running).
"""

import json
import os
from pathlib import Path

from cryostash.errors import EngineError, UsageError
from cryostash.types import Availability, DumpStats, RestoreResult


class ToyEngine:
    name = "toy"

    def _root(self):
        return Path(os.environ["TOY_ROOT"])

    def available(self):
        if "TOY_ROOT" not in os.environ:
            return Availability(ok=False, reason="TOY_ROOT is not set")
        return Availability(ok=True, version="0.1", path=str(self._root()))

    def dump(self, locator, image_dir, options):
        source = self._root() / f"{locator}.txt"
        if not source.exists():
            raise UsageError(f"no toy process {locator!r}")
        if source.read_text().startswith("unfreezable"):
            (image_dir / "partial.img").write_text("half")
            raise EngineError("toy dump failed: the process cannot be frozen")
        (image_dir / "state.img").write_bytes(source.read_bytes())
        (image_dir / "toy.json").write_text(json.dumps({"locator": locator}))
        if not options.leave_running:
            source.unlink()
        return DumpStats(duration_s=0.001, engine_version="0.1", details={"toy": True})

    def restore(self, image_dir, options):
        name = options.container or json.loads((image_dir / "toy.json").read_text())["locator"]
        target = self._root() / f"{name}.txt"
        if target.exists():
            raise EngineError(f"toy process {name!r} is running")
        target.write_bytes((image_dir / "state.img").read_bytes())
        return RestoreResult(pid=4242, duration_s=0.001, details={"container": name})
