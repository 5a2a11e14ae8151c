"""A bounded load test: 16 concurrent workers on one host, real CRIU.

Each worker (``tests/support/load_worker.py``, its own process) checkpoints its own counter
process twice (``--leave-running``), lists, kills the counter and restores it from the
second checkpoint (same PID, counting on), removes the first, lists again; all 16 at once,
on local+SQLite and on S3(moto)+PostgreSQL. Then: every worker succeeded, each target holds
exactly its ``second``, ``gc --grace 0`` finds nothing to settle, ``verify --read-data`` is
clean and the store holds exactly the listed manifests and their blobs (no leftovers, no
scratch folder, no pending row). Again with one worker SIGKILLed at a random moment (a
seeded draw, printed): the others still succeed, ``gc`` on the host settles what the dead
one left at once (its reservation's creator is provably dead) and the same invariants hold.
Every counter and worker is stopped by PID.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryostash import collect_garbage, verify_store
from tests.support.processes import ProcessTracker, pid_exists, read_counter, wait_until
from tests.support.setups import Setup, setup_fixture  # noqa: F401

WORKERS = 16
WORKER = Path(__file__).resolve().parent / "support" / "load_worker.py"
#: The whole run must end within this (it takes about 30-60 s on the 2-core CI machine).
DEADLINE_S = 240.0


@pytest.mark.criu
@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["clean", "one-sigkilled"])
def test_sixteen_concurrent_workers_leave_a_clean_store(
    setup: Setup, criu_path: str, procs: ProcessTracker, tmp_path: Path, kill: bool
) -> None:
    counters = [procs.counter(tmp_path / f"c{i}") for i in range(WORKERS)]
    env = setup.cli_env(criu_path)
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), f"load-{i}", str(c.pid)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i, c in enumerate(counters)
    ]
    victim: int | None = None
    try:
        if kill:
            seed = random.randrange(1 << 30)
            draw = random.Random(seed)
            victim, delay = draw.randrange(WORKERS), draw.uniform(0.5, 5.0)
            print(f"load test: seed {seed}: SIGKILL worker {victim} after {delay:.2f} s")
            wait_until(lambda: time.monotonic() - started >= delay, 20, "the kill moment")
            assert workers[victim].poll() is None, "the victim ended before its kill moment"
            os.kill(workers[victim].pid, signal.SIGKILL)
        results = []
        for w in workers:
            out, err = w.communicate(timeout=max(1.0, DEADLINE_S - (time.monotonic() - started)))
            results.append((w.returncode, out, err))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)
    elapsed = time.monotonic() - started
    print(f"load test: {WORKERS} workers done in {elapsed:.1f} s ({setup.shape})")
    for i, (code, out, err) in enumerate(results):
        if i == victim:
            continue
        assert code == 0 and out.strip() == "ok", (i, code, err[-2000:])
        assert pid_exists(counters[i].pid)  # restored, same PID
        path = counters[i].counter_path
        assert path is not None
        first = read_counter(path)
        wait_until(lambda p=path, f=first: read_counter(p) > f, 20, "a restored counter")

    with setup.manager(criu=criu_path) as mgr:
        report = collect_garbage(mgr.repository, grace_s=0)
        assert report.ok, report.errors
        if victim is None:
            assert not report.aborted and not report.committed
        again = collect_garbage(mgr.repository, grace_s=0)
        assert again.ok and not again.changed, again.as_dict()
        assert mgr.catalog.pending() == []
        listed = {(i.target, i.name) for i in mgr.list()}
        for i in range(WORKERS):
            if i != victim:
                assert [x.name for x in mgr.list(f"load-{i}")] == ["second"]
        final = verify_store(mgr.repository, read_data=True)
        assert final.ok, final.problems
        assert final.checkpoints == len(listed)
    assert set(setup.raw.files()) == setup.expected_objects()
    assert sorted(os.listdir(setup.scratch)) == []
