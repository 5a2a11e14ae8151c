"""A TCP server holding SIZE MiB of a known pattern, answering with the hash of all of it.

Usage: ``tcp_pattern_server.py SIZE_MIB SEED PORT_FILE``

- The memory is the pattern of ``pattern_prog.py``: SIZE MiB, the first half
  ``random.Random(SEED).randbytes``, the second half written zeros.
- Once the memory is in place it listens on 127.0.0.1 (a free port) and writes the port
  to PORT_FILE (atomically).
- It serves any number of connections at once, each for as long as the client keeps it
  open: one reply line per request line.

  - ``HASH`` -> ``HASH <hex>``: the SHA-256 of the whole buffer, computed afresh (it
    reads every page: in a lazily restored process every page not there yet is faulted
    in through CRIU's lazy-pages daemon before the reply is sent);
  - ``PING`` -> ``PONG``; anything else -> ``ERR``.

Used by tests/test_lazy_restore.py (a TCP connection across a lazy restore).
"""

from __future__ import annotations

import hashlib
import os
import selectors
import socket
import sys

from pattern_prog import fill  # a sibling: this runs as a script from its folder


def answer(line: bytes, memory: bytearray) -> bytes:
    """The reply line to request ``line`` (see the module docstring)."""
    request = line.strip()
    if request == b"HASH":
        return f"HASH {hashlib.sha256(memory).hexdigest()}\n".encode()
    if request == b"PING":
        return b"PONG\n"
    return b"ERR\n"


def main() -> None:
    size, seed, port_file = int(sys.argv[1]) << 20, int(sys.argv[2]), sys.argv[3]
    memory = fill(size, seed)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytes] = {}
    tmp = f"{port_file}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(listener.getsockname()[1]))
    os.replace(tmp, port_file)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _addr = listener.accept()
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                pending.pop(sock, None)
                sock.close()
                continue
            buf = pending[sock] + data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                sock.sendall(answer(line, memory))
            pending[sock] = buf


if __name__ == "__main__":
    main()
