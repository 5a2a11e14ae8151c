"""``migrate --to 'ssh HOST cryostash'``: the arguments cryostash appends reach the remote
shell quoted, without credentials, and ssh gets no secret in its environment.

A stand-in ``ssh`` (a script named ``ssh``, as ``--to`` would find it) records the
argument vector and environment it was given and answers ``{}``; the remote shell's own
split is checked with :func:`shlex.split`, as ``sh -c`` would split the joined words.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from cryostash.operations.destination import CommandDestination


def test_ssh_destination_quotes_arguments_and_drops_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "ssh.json"
    ssh = tmp_path / "ssh"
    ssh.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(log)!r}, 'w'))\n"
        "print('{}')\n"
    )
    ssh.chmod(ssh.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-123")
    monkeypatch.setenv("CRYOSTASH_CATALOG", "postgresql://u:pw-secret-456@db/cs")
    hostile = "s3://KEYID:dir-secret-789@bucket/x y;touch /tmp/pwned-$(id -u)"
    dest = CommandDestination([str(ssh), "host-b", "cryostash"], env=dict(os.environ))
    assert dest.prefetch("app", "cp", hostile) == {}
    seen = json.loads(log.read_text())
    remote = shlex.split(" ".join(seen["argv"][1:]))  # what the remote shell runs
    assert remote == [
        "cryostash", "prefetch", "app", "cp", "--json",
        "--checkpoint-dir", "s3://bucket/x y;touch /tmp/pwned-$(id -u)",
    ]
    text = json.dumps(seen)
    assert "dir-secret-789" not in text and "env-secret-123" not in text
    assert "pw-secret-456" not in text and not any(k.startswith("AWS_") for k in seen["env"])
