"""Manifest codec: round trip, canonical bytes, and rejection of anything suspicious."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import blake3
import pytest

from cryostash.errors import IntegrityError
from cryostash.store import FORMAT_VERSION, Manifest
from cryostash.types import FileEntry

EMPTY = blake3.blake3(b"").hexdigest()
D1 = blake3.blake3(b"one").hexdigest()
D2 = blake3.blake3(b"two").hexdigest()


def make(**overrides: Any) -> Manifest:
    fields: dict[str, Any] = {
        "target": "web",
        "name": "cp1",
        "engine": "criu",
        "engine_version": "4.2",
        "host": "host-a",
        "kernel": "6.18.0",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "labels": {"env": "prod", "é": "ü"},
        "parent": None,
        "stats": {"dump_s": 1.25, "engine": {"frozen_time": 1630000}},
        "root_pid": 4242,
        "files": (
            FileEntry("pages-1.img", 0o600, 3, (D1,), D1),
            FileEntry("core/inventory.img", 0o644, 3, (D2,), D2),
            FileEntry("empty.img", 0o600, 0, (), EMPTY),
        ),
    }
    fields.update(overrides)
    return Manifest(**fields)


def encoded(**changes: Any) -> bytes:
    obj = make().to_dict()
    obj.update(changes)
    return json.dumps(obj).encode()


def test_round_trip() -> None:
    manifest = make()
    again = Manifest.from_bytes(manifest.to_bytes(), target="web", name="cp1")
    assert again == manifest
    assert again.format_version == FORMAT_VERSION == 2
    assert [f.path for f in again.files] == ["core/inventory.img", "empty.img", "pages-1.img"]
    assert again.size == 6
    assert again.blob_digests == {D1, D2}


def test_bytes_are_canonical_and_deterministic() -> None:
    a = make()
    b = make(files=tuple(reversed(make().files)), labels={"é": "ü", "env": "prod"})
    assert a.to_bytes() == b.to_bytes()
    data = a.to_bytes()
    assert data.endswith(b"\n") and b"\n" not in data[:-1]
    obj = json.loads(data)
    assert list(obj) == sorted(obj)
    assert Manifest.from_bytes(data).to_bytes() == data


def test_created_at_is_utc_and_naive_is_taken_as_utc() -> None:
    plus2 = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert make(created_at=plus2).created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = make(created_at=datetime(2026, 1, 2, 3, 4, 5))
    assert naive.created_at.tzinfo is UTC
    assert b'"created_at":"2026-01-02T03:04:05+00:00"' in naive.to_bytes()


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe", b"not json", b"[]", b"null", b'{"format_version": 1'],
)
def test_garbage_is_corrupt(data: bytes) -> None:
    with pytest.raises(IntegrityError, match=r"^manifest of web/cp1 is corrupt: "):
        Manifest.from_bytes(data, target="web", name="cp1")


@pytest.mark.parametrize("cut", [1, 10, 100, -2])
def test_truncation_is_corrupt(cut: int) -> None:
    data = make().to_bytes()
    with pytest.raises(IntegrityError, match=r"^manifest of web/cp1 is corrupt: "):
        Manifest.from_bytes(data[:cut], target="web", name="cp1")


@pytest.mark.parametrize("field", ["target", "name", "engine", "host", "created_at", "files"])
def test_missing_field_is_corrupt(field: str) -> None:
    obj = make().to_dict()
    del obj[field]
    with pytest.raises(IntegrityError, match=rf"corrupt: missing field '{field}'"):
        Manifest.from_bytes(json.dumps(obj).encode(), target="web", name="cp1")


def test_unknown_version_is_rejected_naming_it() -> None:
    with pytest.raises(IntegrityError, match="format version 3") as err:
        Manifest.from_bytes(encoded(format_version=3))
    assert "web/cp1" in str(err.value)
    # Version 1 (one raw blob per file) was never released and is not read.
    with pytest.raises(IntegrityError, match="format version 1, which this cryostash cannot"):
        Manifest.from_bytes(encoded(format_version=1))
    with pytest.raises(IntegrityError, match="corrupt: format_version '1'"):
        Manifest.from_bytes(encoded(format_version="1"))


def test_manifest_of_another_checkpoint_is_corrupt() -> None:
    with pytest.raises(IntegrityError, match="corrupt: it names checkpoint web/cp1"):
        Manifest.from_bytes(make().to_bytes(), target="web", name="cp2")


def _with_file(**entry: Any) -> bytes:
    base = {"path": "a.img", "mode": 0o600, "size": 3, "chunks": [[D1, 3]], "digest": D1}
    base.update(entry)
    return encoded(files=[base])


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../escape", "a/../../b", "a//b", "./a", "a/.", "", "a/", "x\x00y"],
)
def test_hostile_path_is_corrupt(path: str) -> None:
    with pytest.raises(IntegrityError, match="corrupt: file path"):
        Manifest.from_bytes(_with_file(path=path))


@pytest.mark.parametrize(
    "entry",
    [
        {"mode": -1},
        {"mode": 0o17777},
        {"mode": "0600"},
        {"size": -1},
        {"size": 1.5},
        {"size": True},
        {"digest": "ABC"},
        {"chunks": [["../../x", 3]]},
        {"chunks": "nope"},
        {"chunks": []},
        {"chunks": [D1, 3]},
        {"chunks": [[D1, 2]]},
        {"chunks": [[D1, 0], [D2, 3]]},
        {"chunks": [[D1, "3"]]},
        {"chunks": [[D1, 1], [D2, 1]]},
        {"size": 4, "chunks": [[D1, 1], [D1, 3]]},
        {"size": 0},
    ],
)
def test_bad_file_entry_is_corrupt(entry: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError, match="manifest of web/cp1 is corrupt"):
        Manifest.from_bytes(_with_file(**entry))


def test_duplicate_and_clashing_paths_are_corrupt() -> None:
    twice = {"path": "a.img", "mode": 0o600, "size": 3, "chunks": [[D1, 3]], "digest": D1}
    with pytest.raises(IntegrityError, match="listed twice"):
        Manifest.from_bytes(encoded(files=[twice, twice]))
    folder = {**twice, "path": "a.img/b.img"}
    with pytest.raises(IntegrityError, match="also the folder of another file"):
        Manifest.from_bytes(encoded(files=[twice, folder]))


@pytest.mark.parametrize(
    "change",
    [
        {"target": "../x"},
        {"name": "a/b"},
        {"labels": {"k": 1}},
        {"stats": []},
        {"root_pid": -5},
        {"root_pid": "12"},
        {"created_at": "yesterday"},
        {"created_at": "2026-01-02T03:04:05"},
        {"engine": 7},
        {"files": {}},
    ],
)
def test_bad_top_level_fields_are_corrupt(change: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError, match="is corrupt"):
        Manifest.from_bytes(encoded(**change))


def test_optional_fields_may_be_absent_and_unknown_keys_are_ignored() -> None:
    obj = make().to_dict()
    for key in ("engine_version", "parent", "root_pid", "labels", "stats"):
        del obj[key]
    obj["added_later"] = {"x": 1}
    manifest = Manifest.from_bytes(json.dumps(obj).encode())
    assert manifest.root_pid is None and manifest.labels == {} and manifest.parent is None


def test_constructor_rejects_invalid_input() -> None:
    with pytest.raises(ValueError, match="file path"):
        make(files=(FileEntry("../x", 0o600, 3, (D1,), D1),))
    with pytest.raises(ValueError, match="format_version"):
        make(format_version=1)
    with pytest.raises(ValueError, match="chunk sizes"):
        make(files=(FileEntry("a", 0o600, 3, (D1, D2), D1),))
    with pytest.raises(ValueError):
        make(stats={"bad": float("nan")}).to_bytes()


def test_chunks_are_recorded_with_their_plain_sizes() -> None:
    entry = FileEntry("pages.img", 0o600, 5, (D1, D2, D1), D2, chunk_sizes=(2, 1, 2))
    manifest = make(files=(entry,))
    obj = json.loads(manifest.to_bytes())
    assert obj["files"][0]["chunks"] == [[D1, 2], [D2, 1], [D1, 2]]
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again.files == (entry,)
    assert again.chunk_sizes == {D1: 2, D2: 1}
    # A file of one chunk may be given without sizes: the manifest fills them in.
    single = make(files=(FileEntry("a", 0o600, 3, (D1,), D1),)).files[0]
    assert single.chunk_sizes == (3,)
