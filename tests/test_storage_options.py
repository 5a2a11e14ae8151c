"""Storage options (``--storage-option``, ``CRYOSTASH_STORAGE_OPTIONS``, the config file)
and the S3 defaults that bound every request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cryostash import UsageError, parse_storage_options, resolve_settings
from cryostash.objects.s3 import DEFAULT_CONFIG, with_defaults
from cryostash.store import Store


def test_values_are_json_when_they_parse_else_text() -> None:
    options = parse_storage_options(
        [
            "endpoint_url=http://127.0.0.1:9000",
            "anon=false",
            "max_concurrency=8",
            'config_kwargs={"read_timeout": 5}',
            'key="0123"',
            "secret=abc=def",
            "empty=",
        ]
    )
    assert options == {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": False,
        "max_concurrency": 8,
        "config_kwargs": {"read_timeout": 5},
        "key": "0123",
        "secret": "abc=def",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["s3cr3t-without-key", "=s3cr3t", " =s3cr3t"])
def test_malformed_pairs_are_refused_without_showing_them(pair: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_storage_options(["region=eu", pair])
    assert str(err.value) == "invalid storage option #2: expected KEY=VALUE"


def test_flags_beat_environment_beat_config_file_key_by_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'store = "s3://bucket/prefix"\n'
        "[storage_options]\n"
        'key = "file-key"\nsecret = "file-secret"\nendpoint_url = "http://file"\n'
    )
    env = {
        "CRYOSTASH_CONFIG": str(config),
        "CRYOSTASH_STORAGE_OPTIONS": json.dumps({"secret": "env-secret", "region": "eu"}),
    }
    settings = resolve_settings({}, env, storage_options={"endpoint_url": "http://flag"})
    assert settings.store_url == "s3://bucket/prefix"
    assert dict(settings.storage_options) == {
        "key": "file-key",
        "secret": "env-secret",
        "region": "eu",
        "endpoint_url": "http://flag",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [("{oops", "is not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_bad_environment_json_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    env = {"CRYOSTASH_CONFIG": os.devnull, "CRYOSTASH_STORAGE_OPTIONS": text}
    with pytest.raises(UsageError, match=message):
        resolve_settings({}, env)


def test_settings_never_show_their_storage_options(tmp_path: Path) -> None:
    env = {"CRYOSTASH_CONFIG": os.devnull}
    settings = resolve_settings({}, env, storage_options={"secret": "hunter2-s3cr3t"})
    assert settings.storage_options["secret"] == "hunter2-s3cr3t"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_s3_defaults_bound_every_request_unless_overridden() -> None:
    merged = with_defaults({"key": "k", "config_kwargs": {"read_timeout": 7}})
    config: dict[str, Any] = merged["config_kwargs"]
    assert merged["key"] == "k"
    assert config["read_timeout"] == 7
    assert config["connect_timeout"] == DEFAULT_CONFIG["connect_timeout"]
    assert config["retries"] == {"total_max_attempts": 3, "mode": "standard"}
    config["retries"]["total_max_attempts"] = 99  # botocore edits this dict in place
    assert DEFAULT_CONFIG["retries"] == {"total_max_attempts": 3, "mode": "standard"}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options of every fsspec file system opened (``url_to_fs`` spied on)."""
    import fsspec.core

    seen: list[dict[str, Any]] = []
    real = fsspec.core.url_to_fs

    def spying_url_to_fs(target: str, **options: Any) -> Any:
        seen.append(options)
        return real(target, **options)

    monkeypatch.setattr(fsspec.core, "url_to_fs", spying_url_to_fs)
    return seen


@pytest.mark.parametrize("url", ["s3://bucket/root", "s3a://bucket/root"])
def test_an_s3_store_is_opened_with_the_defaults(url: str, opened: list[dict[str, Any]]) -> None:
    given = {"key": "k", "secret": "s", "endpoint_url": "http://x"}
    store = Store(url, {**given, "config_kwargs": {"read_timeout": 7}})
    assert store.remote
    assert opened == [with_defaults({**given, "config_kwargs": {"read_timeout": 7}})]
    config = opened[0]["config_kwargs"]
    assert config["read_timeout"] == 7
    assert config["connect_timeout"] == DEFAULT_CONFIG["connect_timeout"]
    assert config["retries"]["mode"] == "standard"


def test_other_stores_get_their_options_as_given(opened: list[dict[str, Any]]) -> None:
    Store("memory://options-test/root", {"skip_instance_cache": True})
    assert opened == [{"skip_instance_cache": True}]
