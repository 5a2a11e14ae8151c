"""Test program: a tiny TCP key-value server whose state lives only in memory.

Usage: ``python tcp_server_prog.py PORT``. Listens on 127.0.0.1:PORT and serves one
request line per connection, then closes it:

- ``PING`` -> ``PONG``
- ``SET key value`` -> ``OK``
- ``GET key`` -> the value (empty line when unset)
- ``STATS`` -> ``served=N keys=K`` (N counts every request before this one)
"""

import socket
import sys


def handle(line: str, data: dict[str, str], served: int) -> str:
    parts = line.split(" ", 2)
    if parts[0] == "PING":
        return "PONG"
    if parts[0] == "SET" and len(parts) == 3:
        data[parts[1]] = parts[2]
        return "OK"
    if parts[0] == "GET" and len(parts) == 2:
        return data.get(parts[1], "")
    if parts[0] == "STATS":
        return f"served={served} keys={len(data)}"
    return "ERR"


def main() -> None:
    port = int(sys.argv[1])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    data: dict[str, str] = {}
    served = 0
    while True:
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            reply = handle(buf.decode().strip(), data, served)
            served += 1
            conn.sendall(reply.encode() + b"\n")


if __name__ == "__main__":
    main()
