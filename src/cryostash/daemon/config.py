"""``DaemonConfig``: what ``cryostash daemon`` was started with (besides the settings every
command takes), and the check that keeps requests inside it.

A request may name a store (``checkpoint_dir``, Docker's ``CheckpointDir`` and ``?dir=``)
only if the daemon was started with it (``--allow-checkpoint-dir``, repeatable); by
default none is allowed and every request uses the daemon's own store. Scratch, cache,
catalog and the default store come from the daemon's settings only: no request field
names them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryostash.daemon.tls import TcpListen
from cryostash.errors import UsageError

if TYPE_CHECKING:
    from cryostash.config import Settings

#: Where the daemon listens unless ``--socket`` says otherwise.
DEFAULT_SOCKET = Path("/run/cryostash/cryostash.sock")
#: The HTTP header in which client and daemon tell their cryostash version.
VERSION_HEADER = "Cryostash-Version"


class NotAllowed(UsageError):
    """A request named a store the daemon was not configured with (HTTP 403)."""


@dataclass(frozen=True)
class DaemonConfig:
    """How the daemon serves.

    Attributes:
        socket: the UNIX socket's path.
        group: a group allowed to use the socket (mode 0660, folder 0750), else root only.
        allowed_dirs: the stores (checkpoint folders) a request may name.
        engine: the engine of Docker's ``/containers/{id}/checkpoints`` routes (``runc``,
            ``podman``, ``docker``); None: those routes answer 501.
        workers: operations run at once (threads, and pooled repositories).
        tcp: a TCP address served with mutual TLS as well as the socket (``--listen``).
    """

    socket: Path = DEFAULT_SOCKET
    group: str | None = None
    allowed_dirs: tuple[str, ...] = ()
    engine: str | None = None
    workers: int = 4
    tcp: TcpListen | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")

    def allowed(self) -> list[str]:
        """``allowed_dirs`` as ``/v1/status`` reports them (normalised, redacted)."""
        return sorted({shown_dir(d) for d in self.allowed_dirs})

    def check_dir(self, checkpoint_dir: str | None) -> None:
        """Refuse ``checkpoint_dir`` unless it is None or one of ``allowed_dirs``.

        Raises:
            NotAllowed: ``checkpoint_dir DIR is not allowed: ...``.
        """
        if checkpoint_dir is None:
            return
        if _normal(checkpoint_dir) not in {_normal(d) for d in self.allowed_dirs}:
            raise NotAllowed(
                f"checkpoint_dir {checkpoint_dir} is not allowed: this daemon serves its own "
                "store and the folders it was started with (--allow-checkpoint-dir)"
            )


def _normal(url: str) -> str:
    """A store URL as compared: a local path made absolute and real, else the URL."""
    path = url.removeprefix("file://")
    if "://" in path:
        return url.rstrip("/")
    return os.path.realpath(Path(path).expanduser())


def shown_dir(url: str) -> str:
    """A store URL as ``/v1/status`` shows it and the command line compares it."""
    from cryostash.redact import redact_text

    return redact_text(_normal(url))


def serves(settings: Settings) -> dict[str, str]:
    """What a daemon with ``settings`` serves, as ``/v1/status`` reports it and as the
    command line compares it with its own settings before it uses a daemon: the default
    store (a local path made absolute and real), the catalog URL (a SQLite file made
    absolute; credentials redacted), the scratch folder and the host name."""
    from cryostash.redact import redact_text

    catalog = settings.catalog_url
    sqlite, sep, path = catalog.partition(":///")
    if sep and sqlite.startswith("sqlite") and not path.startswith("/") and path:
        catalog = f"{sqlite}:///{os.path.abspath(path)}"
    return {
        "store": shown_dir(settings.store_url),
        "catalog": redact_text(catalog),
        "scratch": os.path.realpath(settings.scratch_dir),
        "host": settings.host,
    }
