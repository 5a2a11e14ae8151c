"""The typed adapter over CRIU's own image reader, pycriu (``pycriu.images``).

pycriu is not a PyPI package: ``python -m cryostash.install.criu`` installs Debian's
``python3-pycriu`` (the release of the CRIU it provisions) into ``PREFIX/pycriu``
(:func:`reader_path`). This module is the only one that imports it, lazily, on the first
:func:`load_image`: the prefix's folder is added to ``sys.path`` then, and nowhere else. A
pycriu that is importable already (installed system-wide) is used when the prefix has none.

CRIU images are untrusted input: whatever pycriu raises on a malformed file is reported
as an :class:`~cryostash.errors.IntegrityError` naming the file.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from cryostash.engines.criu_binary import default_prefix
from cryostash.errors import EngineError, IntegrityError

#: The record of the installed reader, in the prefix (package and version).
READER_RECORD = "pycriu.json"

_images: ModuleType | None = None


def reader_path(prefix: Path) -> Path:
    """The folder of ``prefix`` that holds the ``pycriu`` (and ``crit``) packages."""
    return prefix / "pycriu"


def _module() -> ModuleType:
    """``pycriu.images``, imported once (from the prefix when it has it)."""
    global _images
    if _images is None:
        path = str(reader_path(default_prefix()))
        if Path(path, "pycriu").is_dir() and path not in sys.path:
            sys.path.insert(0, path)
        try:
            _images = importlib.import_module("pycriu.images")
        except ImportError as exc:
            raise EngineError(
                f"CRIU's image reader pycriu is not installed ({exc}): run "
                "`python -m cryostash.install.criu` (as root) to provision it"
            ) from exc
    return _images


def load_image(path: Path, *, pretty: bool = False) -> list[dict[str, Any]]:
    """The entries of the CRIU image file ``path``, as pycriu decodes them (dicts).

    ``pretty`` asks pycriu for readable values (flag names, IP addresses, hex numbers).

    Raises:
        EngineError: pycriu is not installed.
        IntegrityError: ``path`` is missing, or not a well-formed CRIU image.
    """
    images = _module()
    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            # pycriu 4.2.1 calls FieldDescriptor.label(), deprecated by protobuf 6
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = images.load(fh, pretty)
    except OSError as exc:
        raise IntegrityError(f"cannot read CRIU image {path.name}: {exc.strerror}") from None
    except Exception as exc:  # untrusted input: pycriu raises anything on bad bytes
        raise IntegrityError(
            f"CRIU image {path.name} is malformed ({type(exc).__name__}: {exc})"
        ) from None
    entries = decoded.get("entries") if isinstance(decoded, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise IntegrityError(f"CRIU image {path.name} is malformed (no entries)")
    return entries
