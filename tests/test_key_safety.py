"""Keys of encrypted stores against a store writer and against concurrency.

- Two removals, each opened with the key the other removes, forced to look at the keys
  before either deletes (a barrier in the backend's listing), on every backend (memory,
  local, S3/moto): never zero keys. Then real parallel processes (``key remove`` x2 and a
  ``key add``) on a local store and on S3 (moto), a few rounds: never zero keys, and every
  key an ``add`` reported opens the store.
- Key objects planted with expensive scrypt parameters (N=2**20, r=32, p=16: 4 GiB) are
  refused before any derivation: opening the store derives once, for the real key; the
  error for a wrong passphrase names the refused objects.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cryostash.errors import UsageError, WrongKey
from cryostash.objects.backend import ObjectInfo
from cryostash.objects.forwarding import ForwardingBackend
from cryostash.store import Store, kdf
from cryostash.store.keys import Unlocked
from tests.support import cli
from tests.support.processes import wait_until
from tests.support.setups import Setup, setup_fixture  # noqa: F401
from tests.support.stores import Backend

PASS_A, PASS_B, PASS_C = b"first passphrase", b"second passphrase", b"third passphrase"
BARRIER = Path(__file__).resolve().parent / "support" / "cli_barrier.py"


class LookTogether(ForwardingBackend):
    """Once ``armed``, every listing of ``keys`` waits, after listing, until the other
    remover listed too."""

    def __init__(self, inner: Any, barrier: threading.Barrier) -> None:
        super().__init__(inner)
        self._barrier = barrier
        self.armed = False

    def scan(self, prefix: str) -> list[ObjectInfo]:
        found = super().scan(prefix)
        if prefix == "keys" and self.armed:
            self._barrier.wait(60)
        return found


def _opened(backend: Backend, passphrase: bytes, wrap: Any = None) -> tuple[Store, Unlocked]:
    raw = backend.open()
    store = Store.over(wrap(raw) if wrap else raw, passphrase=lambda: passphrase)
    store.unlock()
    assert store.keys.unlocked is not None
    return store, store.keys.unlocked


def _two_keys(backend: Backend) -> tuple[str, str]:
    Store.over(backend.open()).keyring.init(passphrase=PASS_A, host="h")
    store, unlocked = _opened(backend, PASS_A)
    assert store.keys.config is not None
    key_b = store.keyring.add_key(store.keys.config, unlocked, PASS_B, "h")
    return unlocked.key_id, key_b


def test_two_removals_that_both_look_first_leave_a_key(backend: Backend) -> None:
    key_a, key_b = _two_keys(backend)
    barrier = threading.Barrier(2)
    looks = [LookTogether(backend.open(), barrier) for _ in range(2)]
    store_a, by_a = _opened(backend, PASS_A, lambda _raw: looks[0])
    store_b, by_b = _opened(backend, PASS_B, lambda _raw: looks[1])
    for look in looks:
        look.armed = True
    errors: dict[str, BaseException] = {}

    def remove(name: str, store: Store, key_id: str, unlocked: Unlocked) -> None:
        try:
            store.keyring.remove_key(key_id, unlocked)
        except BaseException as exc:
            errors[name] = exc

    threads = [
        threading.Thread(target=remove, args=("a", store_a, key_b, by_a)),
        threading.Thread(target=remove, args=("b", store_b, key_a, by_b)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    left = Store.over(backend.open()).keyring.list_keys()
    assert left, "both removals went through: the store has no key left"
    assert errors, "neither removal was refused"
    for exc in errors.values():
        assert isinstance(exc, UsageError) and "no other restore key" in str(exc), exc
    opener = PASS_A if key_a in {k.id for k in left} else PASS_B
    _opened(backend, opener)  # what is left still opens the store
    assert not [p for p in backend.raw.files() if ".removing-" in p]  # no intent left


def test_removal_refused_while_another_is_announced_and_finished_by_running_again(
    backend: Backend,
) -> None:
    """An interrupted removal (its intent left) blocks removing the last other key; running
    it again finishes it."""
    key_a, key_b = _two_keys(backend)
    backend.raw.put(f"keys/{key_a}.removing-0123456789abcdef", b"{}\n")
    store_a, by_a = _opened(backend, PASS_A)
    with pytest.raises(UsageError, match=f"removal of {key_a} is under way"):
        store_a.keyring.remove_key(key_b, by_a)
    store_b, by_b = _opened(backend, PASS_B)
    store_b.keyring.remove_key(key_a, by_b)
    assert [k.id for k in store_b.keyring.list_keys()] == [key_b]
    assert not [p for p in backend.raw.files() if ".removing-" in p]


def _key_object(backend: Backend, key_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(backend.raw.get(f"keys/{key_id}.json"))
    return found


def _plant(backend: Backend, template: dict[str, Any], key_id: str, **params: int) -> None:
    obj = {**template, "id": key_id, "kdf": {**template["kdf"], **params}}
    backend.raw.put(f"keys/{key_id}.json", json.dumps(obj).encode())


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_planted_expensive_keys_are_refused_before_any_derivation(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.over(backend.open()).keyring.init(passphrase=PASS_A, host="h")
    real = Store.over(backend.open()).keyring.list_keys()[0].id
    template = _key_object(backend, real)
    planted = ["0000000000000001", "0000000000000002", "0000000000000003"]
    for key_id in planted:  # sorted before the real key: tried first by the old code
        _plant(backend, template, key_id, n=1 << 20, r=32, p=16)
    calls: list[kdf.KdfParams] = []
    derive = kdf.derive

    def counting(passphrase: bytes, params: kdf.KdfParams) -> bytes:
        calls.append(params)
        assert params.memory <= kdf.MAX_MEMORY, "an out-of-bounds key object was derived"
        return derive(passphrase, params)

    monkeypatch.setattr(kdf, "derive", counting)
    store, unlocked = _opened(backend, PASS_A)
    assert unlocked.key_id == real and len(calls) == 1  # the planted keys cost nothing
    calls.clear()
    with pytest.raises(WrongKey) as err:
        _opened(backend, b"not it")
    assert len(calls) == 1
    for key_id in planted:
        assert f"keys/{key_id}.json asks scrypt N=1048576, r=32, p=16" in str(err.value)
    assert "4096 MiB of memory" in str(err.value) and "refused" in str(err.value)
    listed = {k.id: k for k in store.keyring.list_keys()}
    assert listed[planted[0]].host == "?" and listed[real].host == "h"


@pytest.mark.parametrize(
    ("n", "r", "p", "ok"),
    [
        (1 << 15, 8, 1, True),  # what cryostash writes
        (1 << 16, 8, 1, True),  # 2x memory and work
        (1 << 15, 16, 1, True),
        (1 << 15, 8, 2, True),  # 2x work
        (1 << 17, 8, 1, False),
        (1 << 15, 8, 3, False),
        (1 << 14, 8, 5, False),
        (1 << 20, 32, 16, False),
        (3 << 14, 8, 1, False),  # not a power of two
        (1 << 15, 0, 1, False),
    ],
)
def test_kdf_bounds_are_twice_the_default(n: int, r: int, p: int, ok: bool) -> None:
    fields = {"name": "scrypt", "n": n, "r": r, "p": p, "salt": "A" * 24}
    if ok:
        assert kdf.parse_kdf(fields, "keys/x.json").n == n
    else:
        with pytest.raises(kdf.KdfRefused, match=r"keys/x\.json"):
            kdf.parse_kdf(fields, "keys/x.json")


def _racing(
    env: dict[str, str], tmp_path: Path, runs: list[tuple[bytes, list[str]]]
) -> list[subprocess.CompletedProcess[str]]:
    """Run each ``cryostash ARGS`` (opened with its passphrase; a new key gets PASS_C) at
    the same instant: every process imports everything, then waits for one start file."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    started = []
    for n, (passphrase, args) in enumerate(runs):
        ready = tmp_path / f"ready-{n}"
        ready.unlink(missing_ok=True)
        run_env = {**env, "CRYOSTASH_PASSWORD": passphrase.decode(),
                   "CRYOSTASH_NEW_PASSWORD": PASS_C.decode()}
        started.append((ready, subprocess.Popen(
            [sys.executable, str(BARRIER), str(ready), str(go), *args], env=run_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )))
    try:
        for ready, proc in started:
            wait_until(lambda r=ready, p=proc: r.exists() or p.poll() is not None, 120,
                       "the racing command to be ready")
        go.touch()
        outs = [proc.communicate(timeout=120) for _ready, proc in started]
    finally:
        for _ready, proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [
        subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        for (_ready, proc), (out, err) in zip(started, outs, strict=True)
    ]


def _as(env: dict[str, str], passphrase: bytes, **extra: str) -> dict[str, str]:
    return {**env, "CRYOSTASH_PASSWORD": passphrase.decode(), **extra}


def test_parallel_removals_and_an_add_never_leave_zero_keys(
    setup: Setup, tmp_path: Path
) -> None:
    """Per round, a fresh store with keys A and B; at once: ``key remove B`` opened with
    A, ``key remove A`` opened with B, ``key add`` (C) opened with A."""
    for n in range(3):
        where = ["--checkpoint-dir", f"{setup.store_url.rstrip('/')}/round-{n}"]
        env = setup.cli_env()
        cli.run(["store", "init", "--encrypt", *where], _as(env, PASS_A))
        added = cli.run(["key", "add", "--json", *where],
                        _as(env, PASS_A, CRYOSTASH_NEW_PASSWORD=PASS_B.decode()))
        key_b = json.loads(added.stdout)["id"]
        listed = json.loads(cli.run(["key", "list", "--json", *where], _as(env, PASS_A)).stdout)
        key_a = next(k["id"] for k in listed if k["current"])
        done = _racing(env, tmp_path, [
            (PASS_A, ["key", "remove", key_b, *where]),
            (PASS_B, ["key", "remove", key_a, *where]),
            (PASS_A, ["key", "add", "--json", *where]),
        ])
        for proc in done[:2]:
            # Refused as the last key, or beaten to it: the other removal already took the
            # key this one opened the store with, so its passphrase no longer opens it.
            beaten = "wrong passphrase" in proc.stderr and "none of its" in proc.stderr
            assert proc.returncode in (0, 2) or beaten, proc.stderr
            if proc.returncode == 2:
                assert "no other restore key" in proc.stderr, proc.stderr
        lists = {
            p: cli.run(["key", "list", "--json", *where], _as(env, p), check=False)
            for p in (PASS_A, PASS_B, PASS_C)
        }
        opens = [p for p, out in lists.items() if out.returncode == 0]
        assert opens, f"round {n}: no passphrase opens the store, every key was removed"
        left = {k["id"] for k in json.loads(lists[opens[0]].stdout)}
        assert (key_b in left) == (done[0].returncode != 0), (n, done[0].stderr)
        assert (key_a in left) == (done[1].returncode != 0), (n, done[1].stderr)
        if done[2].returncode == 0:
            new = json.loads(done[2].stdout)["id"]
            assert new in left and lists[PASS_C].returncode == 0
