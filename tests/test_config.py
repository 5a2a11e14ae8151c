"""Settings precedence: flags beat environment beats config file beats defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryostash import UsageError, resolve_settings
from cryostash.config import data_dir


def test_defaults_live_under_the_data_folder(tmp_path: Path) -> None:
    env = {"CRYOSTASH_CONFIG": os.devnull, "XDG_DATA_HOME": str(tmp_path)}
    s = resolve_settings({}, env)
    base = data_dir(env)
    assert s.store_url == str(base / "store")
    assert s.catalog_url == f"sqlite:///{base / 'catalog.db'}"
    assert s.scratch_dir == base / "scratch"
    assert s.host


def test_root_data_folder_is_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert data_dir({}) == Path("/var/lib/cryostash")


def test_non_root_uses_xdg_data_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert data_dir({"XDG_DATA_HOME": "/x/data"}) == Path("/x/data/cryostash")


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('store = "/from/file"\nhost = "file-host"\nscratch = "/file/scratch"\n')
    env = {
        "CRYOSTASH_CONFIG": str(cfg),
        "CRYOSTASH_STORE": "/from/env",
        "CRYOSTASH_HOST": "env-host",
    }
    s = resolve_settings({"store": "/from/flag", "host": None}, env)
    assert s.store_url == "/from/flag"
    assert s.host == "env-host"
    assert s.scratch_dir == Path("/file/scratch")


def test_broken_config_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("store = [unclosed\n")
    with pytest.raises(UsageError, match="cannot read config file"):
        resolve_settings({}, {"CRYOSTASH_CONFIG": str(cfg)})


def test_lease_from_environment_and_file_and_bad_ones_refused(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('lease = "2m"\n')
    env = {"CRYOSTASH_CONFIG": str(conf), "XDG_DATA_HOME": str(tmp_path)}
    assert resolve_settings(env={"XDG_DATA_HOME": str(tmp_path)}).lease_s == 60
    assert resolve_settings(env=env).lease_s == 120
    assert resolve_settings(env={**env, "CRYOSTASH_LEASE": "5s"}).lease_s == 5
    with pytest.raises(UsageError, match=r"invalid lease '0\.5s': it must be at least 1s"):
        resolve_settings(env={**env, "CRYOSTASH_LEASE": "0.5s"})
    with pytest.raises(UsageError, match=r"invalid lease 'soon'"):
        resolve_settings(env={**env, "CRYOSTASH_LEASE": "soon"})
