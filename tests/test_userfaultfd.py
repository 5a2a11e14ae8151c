"""The kernel probe behind ``restore --lazy``'s up-front check
(:mod:`cryostash.engines.userfaultfd`) must answer what CRIU's own ``criu check --feature
uffd-noncoop`` answers on this machine: a wrong True would let a lazy restore start and
fail late, a wrong False would refuse lazy restore where it works."""

from __future__ import annotations

import os
import subprocess

import pytest

from cryostash.engines import userfaultfd


@pytest.mark.criu
def test_probe_agrees_with_criu_check(criu_path: str) -> None:
    done = subprocess.run(
        [criu_path, "check", "--feature", "uffd-noncoop"], capture_output=True, text=True,
        check=False, timeout=60,
    )
    assert userfaultfd.noncoop_support() is (done.returncode == 0), done.stdout + done.stderr


def test_unknown_machine_defers_to_criu(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.uname()
    fake = os.uname_result((*real[:4], "vax"))
    monkeypatch.setattr(userfaultfd.os, "uname", lambda: fake)
    assert userfaultfd.noncoop_support() is None


def test_a_refused_system_call_means_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a kernel without userfaultfd (or a seccomp filter) answers: -1."""

    class NoSyscall:
        def syscall(self, *_args: object) -> int:
            return -1

    monkeypatch.setattr(userfaultfd.ctypes, "CDLL", lambda *_a, **_k: NoSyscall())
    assert userfaultfd.noncoop_support() is False
