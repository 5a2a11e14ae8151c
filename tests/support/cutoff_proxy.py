"""A TCP proxy that takes a store off the network after a byte budget (test support).

:class:`CutoffProxy` listens on 127.0.0.1 and forwards every connection to ``upstream``
(the moto server), byte for byte, both ways. It counts the bytes forwarded from the
server to the clients; the moment that count reaches ``budget`` (the last piece is cut
to the budget) it **cuts**: it stops listening (its port refuses connections from then
on, exactly like a server that stopped) and shuts down every connection, mid-response if
need be. So the client (cryostash) sees the store vanish at a point fixed in bytes, not
in time: with a budget far below what a restore must fetch, the store is certainly gone
while data is still missing.

With ``hold=True`` it **holds** at the budget instead: every connection stays open but
nothing more reaches the clients (``held`` is set), until :meth:`CutoffProxy.close`; so a
transfer is certainly incomplete while the test acts on it (signals a lazy-restore helper).

Threads: one accepting, two per connection; :meth:`CutoffProxy.close` (also on
``with`` exit) cuts if not yet cut and joins every one of them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType


class CutoffProxy:
    """See the module docstring.

    Attributes:
        port: the port it listens on (127.0.0.1).
        forwarded: bytes forwarded from the server to the clients so far.
        cut_done: set once it has cut.
        held: (``hold=True``) set once the budget is reached and it holds.
    """

    def __init__(self, upstream: tuple[str, int], budget: int, *, hold: bool = False) -> None:
        self._upstream = upstream
        self._budget = budget
        self._hold = hold
        self.held = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.forwarded = 0
        self.cut_done = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept, "proxy-accept")

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.cut_done.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was shut down: cut
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.cut_done.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self._spawn(self._pump, "proxy-up", client, server, False)
                self._spawn(self._pump, "proxy-down", server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        """Forward ``source`` -> ``sink``; the server->client pump (``counted``) counts the
        bytes, cuts at the budget, and closes the pair when the server is done."""
        try:
            self._forward(source, sink, counted)
        finally:
            if counted:
                self._drop(source, sink)

    def _drop(self, *pair: socket.socket) -> None:
        with self._lock:
            self._sockets = [s for s in self._sockets if s not in pair]
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _forward(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if counted:
                with self._lock:
                    room = self._budget - self.forwarded
                    data = data[: max(0, room)]
                    self.forwarded += len(data)
                    over = self.forwarded >= self._budget
            else:
                over = False
            try:
                if data:
                    sink.sendall(data)
            except OSError:
                return
            if over and self._hold:
                self.held.set()
                self.cut_done.wait()  # hold every byte back until close()
                return
            if over:
                self.cut()
                return

    def cut(self) -> None:
        """Stop listening and shut down every connection (idempotent)."""
        with self._lock:
            if self.cut_done.is_set():
                return
            self.cut_done.set()
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self, timeout: float = 10.0) -> None:
        """Cut (if not yet done) and join every thread."""
        self.cut()
        for thread in list(self._threads):
            thread.join(timeout)
            if thread.is_alive():
                raise AssertionError(f"proxy thread {thread.name} did not stop")

    def __enter__(self) -> CutoffProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
