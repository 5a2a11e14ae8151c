"""``Key``: the typed name of one object of a store (restic's ``backend.Handle``).

A key says *what* an object is (its :class:`Kind`) and *where* it lives (its ``path``,
``/``-separated and relative to the store root). Wrappers decide by kind, never by
parsing a path: the caching wrapper serves :attr:`Kind.CHUNK` objects from the chunk
cache and evicts them on delete; every other kind passes through. The checkpoint format
(:mod:`cryostash.store.layout`) renders its keys; this module knows no layout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """What an object is, for the wrappers that treat kinds differently."""

    CHUNK = "chunk"  #: content-addressed, immutable: cacheable
    MANIFEST = "manifest"  #: a checkpoint's commit marker (create-only)
    CONFIG = "config"  #: the store's configuration object
    KEY = "key"  #: one key object (a wrapped master key)
    PROBE = "probe"  #: a writability probe
    OTHER = "other"  #: anything else (a stray being removed, a test object)


@dataclass(frozen=True)
class Key:
    """One object: its ``kind``, its ``path`` under the store root and its ``name``
    (what names it within its kind: a chunk's digest; defaults to the path).

    The path is checked when the key is made: non-empty, relative, no empty, ``.`` or
    ``..`` component, so that no key names an object outside the root.

    Raises:
        ValueError: a path that is not plain.
    """

    kind: Kind
    path: str
    name: str = ""

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if not self.path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a plain object path: {self.path!r}")
        if not self.name:
            object.__setattr__(self, "name", self.path)

    def __str__(self) -> str:
        return self.path


def other(path: str) -> Key:
    """A key of kind :attr:`Kind.OTHER` at ``path``."""
    return Key(Kind.OTHER, path)
