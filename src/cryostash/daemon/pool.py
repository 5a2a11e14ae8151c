"""``RepositoryPool``: the warm part of the daemon, a few repositories reused across
requests, each used by one thread at a time.

A :class:`~cryostash.repository.Repository` is not thread-safe, but it is what keeps
warm what every command rebuilds: the catalog engine and its connection pool, the store
clients (one per checkpoint folder), an encrypted store's unlocked key. The pool lends
each request a repository of its own (an idle one, or a new one while fewer than
``size`` exist) and takes it back when the request ends; a repository whose operation
failed with an unexpected error (not a :class:`~cryostash.errors.CryostashError`) is
closed and replaced, in case it was left in a broken state.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cryostash.errors import CryostashError

if TYPE_CHECKING:
    from cryostash.repository import Repository


class RepositoryPool:
    """At most ``size`` repositories made by ``factory``, each lent to one thread at a time.

    Thread-safe. :meth:`lend` blocks while ``size`` repositories are lent (the daemon's
    worker threads are as many, so it never waits in practice).
    """

    def __init__(self, factory: Callable[[], Repository], size: int) -> None:
        if size < 1:
            raise ValueError("a repository pool needs a size of at least 1")
        self._factory = factory
        self._size = size
        self._idle: list[Repository] = []
        self._made = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def made(self) -> int:
        """How many repositories exist now (lent or idle)."""
        with self._cond:
            return self._made

    @contextlib.contextmanager
    def lend(self) -> Iterator[Repository]:
        """A repository for the block alone; given back afterwards (closed and forgotten
        if the block raised something other than a CryostashError)."""
        repo = self._take()
        healthy = False
        try:
            yield repo
            healthy = True
        except CryostashError:
            healthy = True
            raise
        finally:
            self._give_back(repo, healthy)

    def _take(self) -> Repository:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the repository pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._made < self._size:
                    self._made += 1
                    break
                self._cond.wait()
        try:
            return self._factory()
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def _give_back(self, repo: Repository, healthy: bool) -> None:
        with self._cond:
            keep = healthy and not self._closed
            if keep:
                self._idle.append(repo)
            else:
                self._made -= 1
            self._cond.notify()
        if not keep:
            repo.close()

    def close(self) -> None:
        """Close every idle repository; those lent are closed when given back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._made -= len(idle)
            self._cond.notify_all()
        for repo in idle:
            repo.close()
