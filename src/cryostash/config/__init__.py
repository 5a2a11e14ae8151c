"""Configuration (a leaf layer): settings resolved from flags, environment, config file
and defaults (:mod:`~cryostash.config.settings`), and the data-path settings
(:mod:`~cryostash.config.transfer`: chunk size, compression, chunk cache)."""

from cryostash.config.settings import (
    Settings,
    config_file,
    data_dir,
    parse_option_value,
    parse_storage_options,
    resolve_settings,
)
from cryostash.config.transfer import TransferSettings

__all__ = [
    "Settings",
    "TransferSettings",
    "config_file",
    "data_dir",
    "parse_option_value",
    "parse_storage_options",
    "resolve_settings",
]
