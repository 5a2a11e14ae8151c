"""What every verb needs: resolved settings and a lazily opened repository.

Start-up: the repository's modules (SQLAlchemy above all, except for the read verbs of
:data:`READ_VERBS`, and the store's fsspec backend when it is not the local disk) load
with the cyclic garbage collector paused, and what they created is then frozen
(``gc.freeze``, once per process): those objects live as long as the process anyway, and
neither the collections during the import nor the final one at exit walk them again.
That takes about a third off a short command such as ``ls`` (see :func:`_loading`).

A verb calls its operation through :meth:`Context.call`, which runs it in this process or
on a daemon (:mod:`cryostash.cli.daemon_route`): either way it returns the same typed
result, and the daemon's errors are raised as the same classes with the same messages,
so the verb's presentation, ``--json`` and exit codes are the same.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cryostash.cli.present import clean, print_json, say

__all__ = ["Context", "engine_opts", "parse_labels", "print_json", "print_stats"]

if TYPE_CHECKING:
    from cryostash import Settings
    from cryostash.cli.progress import Bars
    from cryostash.repository import Repository


#: Verbs that read a SQLite catalog with ``sqlite3`` alone (never loading SQLAlchemy);
#: every other verb loads the catalog's modules in :func:`_loading` with the repository's,
#: except ``restore --lazy``, which only reads before the process runs (its detached
#: helper loads the catalog to record the restore's event once the process runs).
READ_VERBS = frozenset({"ls", "inspect", "events"})
#: Verbs that may create the store or the catalog they write to (on first use); every
#: other verb refuses an explicitly chosen store or catalog that does not exist
#: (:attr:`cryostash.repository.Repository.create`).
CREATING_VERBS = frozenset({"create", "import", "store", "db", "catalog", "migrate"})

T = TypeVar("T")
_UNDECIDED = Path()


class Context:
    """Settings from the global flags, and a repository opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._settings: Settings | None = None
        self._repository: Repository | None = None
        self._bars: Bars | None = None
        self._daemon: Path | None = _UNDECIDED

    def call(
        self, verb: str, function: Callable[..., T], request: object, result: Any
    ) -> T:
        """``function(repository, request)`` (the operation of ``verb``), in this process
        or on the daemon :func:`~cryostash.cli.daemon_route.choose` chose, whose reply is
        decoded as ``result`` (the operation's return type).

        Raises:
            CryostashError: the operation's error (from the daemon: the class of its exit
                code, its message); DaemonError: the daemon named cannot serve.
        """
        if self._daemon is _UNDECIDED:
            from cryostash.cli.daemon_route import choose

            self._daemon = choose(self.args, self.settings)
        if self._daemon is None:
            return function(self.repository, request)
        from cryostash.daemon import client, codec

        data = client.call(
            verb, codec.encode(request, fields=True), socket_path=self._daemon, lossless=True
        )
        return cast(T, codec.decode_result(result, data, verb))

    @property
    def settings(self) -> Settings:
        """Settings resolved from flags, environment, config file and defaults."""
        if self._settings is None:
            from cryostash import parse_storage_options, resolve_settings

            self._settings = resolve_settings(
                {
                    "store": self.args.store,
                    "catalog": self.args.catalog,
                    "scratch": self.args.scratch,
                    "host": self.args.host,
                    "criu": self.args.criu,
                    **{
                        key: getattr(self.args, key, None)
                        for key in ("chunk_size", "compression", "cache", "cache_size")
                    },
                },
                storage_options=parse_storage_options(
                    getattr(self.args, "storage_option", None)
                ),
            )
        return self._settings

    @property
    def repository(self) -> Repository:
        """The repository every operation works on (its catalog opens on first use)."""
        if self._repository is None:
            with _loading():
                from cryostash.cli import progress
                from cryostash.repository import Repository

                verb = getattr(self.args, "verb", None)
                lazy_restore = verb == "restore" and getattr(self.args, "lazy", False)
                if verb not in READ_VERBS and not lazy_restore:
                    import cryostash.catalog.catalog  # noqa: F401 - SQLAlchemy, paused gc

                _load_store_backend(
                    getattr(self.args, "checkpoint_dir", None) or self.settings.store_url
                )

            self._bars = progress.bars(progress.wanted(bool(getattr(self.args, "json", False))))
            self._repository = Repository(
                self.settings, jobs=self.args.jobs, progress=self._bars, notice=self.notice
            )
            self._repository.ask_passphrase = True  # a terminal may be asked
            self._repository.create = verb in CREATING_VERBS
        return self._repository

    def notice(self, text: str) -> None:
        """Print an operation's notice (what it waits for) on stderr, on a terminal or
        not, with ``--json`` too (stdout keeps the JSON); above any progress bar."""
        if self._bars is not None:
            self._bars.write(clean(text))
        else:
            say(text, err=True, flush=True)

    def close(self) -> None:
        """Close the repository if one was opened (and remove any progress bar left)."""
        if self._bars is not None:
            self._bars.close()
        if self._repository is not None:
            self._repository.close()


_frozen = False


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Import long-lived modules with the collector paused, then freeze every object
    there is (once per process: later garbage is collected as usual)."""
    global _frozen
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if not _frozen:
            _frozen = True
            gc.freeze()


def _load_store_backend(url: str) -> None:
    """Import the fsspec implementation of a store that is not on the local disk (s3fs
    and botocore are big), so that it loads in :func:`_loading` too. Best effort:
    opening the store reports any problem."""
    from cryostash.urls import LOCAL_PROTOCOLS, protocols

    with contextlib.suppress(Exception):
        names = protocols(url)
        if not set(names) <= LOCAL_PROTOCOLS:
            import fsspec

            for name in names:
                fsspec.get_filesystem_class(name)


def print_stats(stats: Any) -> None:
    """Print the stats of a create or restore, one per line, on stderr (``--print-stats``)."""
    from cryostash.cli.present import format_stats

    for line in format_stats(stats):
        say(line, err=True)


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict; a pair without ``=`` or with an empty key is refused."""
    from cryostash import UsageError

    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def engine_opts(opts: list[str] | None) -> list[str]:
    """``--criu-opt`` values as CRIU arguments (``tcp-established`` -> ``--tcp-established``)."""
    return [o if o.startswith("-") else f"--{o}" for o in opts or []]
