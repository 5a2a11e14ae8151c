"""The docker side-file is rebuilt by allow-list (:mod:`cryostash.engines.docker_config`):
what a store writer puts in a recorded ``HostConfig`` reaches ``POST /containers/create``
only when harmless or named by ``restore --allow``. Pure functions: no daemon here (the
CLI's refusal, before any container is created: ``test_docker_restore_refusal.py``)."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryostash import UsageError
from cryostash.engines.docker_config import (
    HARMLESS_CONFIG,
    HARMLESS_HOST,
    allow_word,
    rebuild,
)
from tests.support.docker_configs import ETC_VOLUME, INSPECTED

CONFIG = {"Image": "busybox:1", "Cmd": ["sh", "-c", "sleep 1000"], "Env": ["A=1"]}


def record(**host: Any) -> dict[str, Any]:
    return {"container_name": "c1", "config": dict(CONFIG), "host_config": {**INSPECTED, **host}}


def test_a_default_container_is_recreated_without_allow() -> None:
    body = rebuild(record(), frozenset(), "c1")

    assert body["Cmd"] == CONFIG["Cmd"] and body["Env"] == ["A=1"]
    host = body["HostConfig"]
    assert host["PortBindings"] == INSPECTED["PortBindings"]
    assert host["NetworkMode"] == "bridge" and host["ShmSize"] == 67108864
    # the inspect-reported defaults are left to this daemon's own defaults
    assert "MaskedPaths" not in host and "ReadonlyPaths" not in host


@pytest.mark.parametrize(
    ("field", "value", "word", "shown"),
    [
        ("MaskedPaths", [], "MaskedPaths", "MaskedPaths: []"),
        ("ReadonlyPaths", [], "ReadonlyPaths", "ReadonlyPaths: []"),
        ("ReadonlyPaths", ["/proc/bus"], "ReadonlyPaths", "/proc/bus"),  # /proc/sys writable
        ("VolumesFrom", ["victim:rw"], "VolumesFrom", "victim:rw"),
        ("Mounts", [ETC_VOLUME], "host-mounts", "'device': '/etc'"),
        ("Mounts", [{"Type": "bind", "Source": "/", "Target": "/h"}], "host-mounts", "bind /"),
        ("Binds", ["/etc:/x:ro"], "host-mounts", "/etc"),
        ("Privileged", True, "privileged", "Privileged: true"),
        ("CapAdd", ["SYS_ADMIN"], "capabilities", "SYS_ADMIN"),
        ("NetworkMode", "host", "host-namespaces", "NetworkMode=host"),
        ("PidMode", "container:victim", "host-namespaces", "PidMode=container:victim"),
        ("LogConfig", {"Type": "gelf", "Config": {"gelf-address": "udp://evil:1"}},
         "LogConfig", "gelf"),
        ("CgroupParent", "/system.slice", "CgroupParent", "/system.slice"),
        ("Sysctls", {"net.ipv4.ip_forward": "1"}, "Sysctls", "ip_forward"),
    ],
)
def test_a_field_beyond_the_allow_list_needs_its_word(
    field: str, value: Any, word: str, shown: str
) -> None:
    hostile = record(**{field: value})

    with pytest.raises(UsageError) as refused:
        rebuild(hostile, frozenset(), "c1")
    message = str(refused.value)
    assert f"{word} (" in message and shown in message and f"--allow {word}" in message
    assert refused.value.exit_code == 2
    with pytest.raises(UsageError):  # another word does not let it through
        rebuild(hostile, frozenset({"devices"}), "c1")

    body = rebuild(hostile, frozenset({word}), "c1")
    assert body["HostConfig"][field] == value


def test_the_refusal_lists_every_word_at_once() -> None:
    hostile = record(MaskedPaths=[], ReadonlyPaths=[], VolumesFrom=["v"], Mounts=[ETC_VOLUME])

    with pytest.raises(UsageError) as refused:
        rebuild(hostile, frozenset({"ReadonlyPaths"}), "c1")
    message = str(refused.value)
    assert "--allow MaskedPaths --allow VolumesFrom --allow host-mounts" in message
    assert "ReadonlyPaths (" not in message


def test_named_volumes_and_tmpfs_are_harmless() -> None:
    plain = {"Type": "volume", "Source": "data", "Target": "/data"}
    tmpfs = {"Type": "tmpfs", "Target": "/run"}
    body = rebuild(record(Binds=["data:/data", "/anon"], Mounts=[plain, tmpfs]), frozenset(), "c")

    assert body["HostConfig"]["Mounts"] == [plain, tmpfs]
    assert body["HostConfig"]["Binds"] == ["data:/data", "/anon"]


def test_unknown_config_fields_need_their_word_too() -> None:
    smuggled = record()
    smuggled["config"]["NetworkingConfig"] = {"EndpointsConfig": {"host": {}}}

    with pytest.raises(UsageError, match="--allow NetworkingConfig"):
        rebuild(smuggled, frozenset(), "c1")


def test_allow_words_are_categories_or_field_names() -> None:
    assert allow_word("privileged") == "privileged"
    assert allow_word("MaskedPaths") == "MaskedPaths"
    for bad in ("", "all", "Masked Paths", "x" * 80, "--privileged"):
        with pytest.raises(ValueError):
            allow_word(bad)


_FIELD_NAMES = st.from_regex(r"[A-Z][A-Za-z0-9]{1,20}", fullmatch=True).filter(
    lambda name: name not in {*HARMLESS_HOST, *HARMLESS_CONFIG, *INSPECTED, "Mounts", "HostConfig"}
)
_NOT_DEFAULT = st.one_of(
    st.integers().filter(bool),
    st.text(string.printable, min_size=1, max_size=20),
    st.just(True),
    st.lists(st.text(max_size=5), min_size=1, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), min_size=1, max_size=3),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(field=_FIELD_NAMES, value=_NOT_DEFAULT, where=st.sampled_from(["host", "config"]))
def test_a_random_extra_field_is_never_sent_unasked(field: str, value: Any, where: str) -> None:
    planted = record()
    planted["host_config" if where == "host" else "config"][field] = value

    with pytest.raises(UsageError) as refused:
        rebuild(planted, frozenset(), "c1")
    assert f"--allow {field}" in str(refused.value)

    body = rebuild(planted, frozenset({field}), "c1")
    sent = body["HostConfig"] if where == "host" else body
    assert sent[field] == value
