"""S3 specifics (s3fs): default timeouts and retries.

Imported only when a store on ``s3://`` is opened or used.

- :func:`with_defaults` bounds every request: botocore connect and read timeouts and a
  small number of attempts (``standard`` retry mode), unless the user's own
  ``config_kwargs`` storage option says otherwise, key by key. An unreachable endpoint
  therefore fails within seconds instead of minutes.
What s3fs raises becomes a sentinel error at the fsspec backend's boundary
(:mod:`cryostash.objects.fsspec_errors`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: botocore ``Config`` values applied unless the ``config_kwargs`` storage option sets them.
#: Connection refused or timed out: 3 attempts in all (botocore's ``standard`` mode backs
#: off up to 1 s, then 2 s), so an unreachable endpoint fails within about 20 s at worst.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
    "max_pool_connections": 32,
}


def with_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for ``s3fs.S3FileSystem`` with :data:`DEFAULT_CONFIG` filled in.

    The user's ``config_kwargs`` win key by key (``{"retries": {"total_max_attempts":
    10}}`` replaces only the retry policy).
    """
    merged = dict(options)
    config = copy.deepcopy(dict(DEFAULT_CONFIG))  # botocore edits ``retries`` in place
    config.update(copy.deepcopy(dict(merged.get("config_kwargs") or {})))
    merged["config_kwargs"] = config
    return merged
