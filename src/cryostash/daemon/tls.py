"""The daemon's opt-in TCP listener, always with mutual TLS.

``--listen tcp://ADDR:PORT`` serves the same application as the UNIX socket on a TCP
address, and only with ``--tls-cert`` (the daemon's certificate chain, PEM), ``--tls-key``
(its private key, PEM) and ``--tls-client-ca`` (the CA, PEM, whose certificates clients
must present): a client without a certificate signed by that CA is refused during the TLS
handshake, before any HTTP. There is no plain-TCP mode and no server-only TLS: whoever
can connect may checkpoint and restore any process of the host as root, so every client
proves who it is. TLS 1.2 is the minimum.

:func:`parse_listen` checks the options (a :class:`~cryostash.errors.UsageError`, exit 2,
names what is missing or wrong); :func:`server_context` and :func:`bind_tcp` build what
the server needs.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryostash.errors import UsageError


@dataclass(frozen=True)
class TcpListen:
    """A TCP address to listen on with mutual TLS.

    Attributes:
        host: the address (an IP or a name; ``[::1]`` as ``::1``).
        port: the port (0: any free port, logged at start).
        cert, key: the daemon's certificate chain and private key (PEM files).
        client_ca: the CA whose certificates clients must present (PEM file).
    """

    host: str
    port: int
    cert: Path
    key: Path
    client_ca: Path

    @property
    def url(self) -> str:
        """``tcp://HOST:PORT`` as given (the port as configured)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_listen(
    listen: str | None, cert: Path | None, key: Path | None, client_ca: Path | None
) -> TcpListen | None:
    """The TCP listener of ``--listen`` and the three TLS options, or None without them.

    Raises:
        UsageError: ``--listen`` without all three TLS options, a TLS option without
            ``--listen``, an address that is not ``tcp://ADDR:PORT``, a file missing.
    """
    given = {"--tls-cert": cert, "--tls-key": key, "--tls-client-ca": client_ca}
    if listen is None:
        named = [option for option, value in given.items() if value is not None]
        if named:
            raise UsageError(f"{', '.join(named)} only go with --listen tcp://ADDR:PORT")
        return None
    missing = [option for option, value in given.items() if value is None]
    if missing:
        raise UsageError(
            f"--listen {listen} needs mutual TLS: give {', '.join(missing)} (the daemon's "
            "certificate and key, and the CA that signs its clients' certificates); "
            "the daemon never listens on TCP without them"
        )
    parts = urlsplit(listen)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or parts.path not in (
        "", "/"
    ):
        raise UsageError(f"--listen {listen}: expected tcp://ADDR:PORT (e.g. tcp://10.0.0.5:7443)")
    assert cert is not None and key is not None and client_ca is not None
    for option, path in (("--tls-cert", cert), ("--tls-key", key),
                         ("--tls-client-ca", client_ca)):
        if not path.is_file():
            raise UsageError(f"{option} {path}: no such file")
    return TcpListen(parts.hostname, port, cert, key, client_ca)


def server_context(listen: TcpListen) -> ssl.SSLContext:
    """A server context that demands a client certificate signed by ``listen.client_ca``.

    Raises:
        UsageError: a certificate, key or CA file that does not load (named).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(listen.cert, listen.key)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"--tls-cert {listen.cert} / --tls-key {listen.key} do not load: {exc}"
        ) from None
    try:
        context.load_verify_locations(cafile=listen.client_ca)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"--tls-client-ca {listen.client_ca} does not load: {exc}") from None
    return context


def bind_tcp(listen: TcpListen) -> socket.socket:
    """A listening, non-blocking TCP socket on ``listen``'s address.

    Raises:
        UsageError: the address cannot be bound (in use, not this host's).
    """
    try:
        sock = socket.create_server((listen.host, listen.port), backlog=128)
    except OSError as exc:
        raise UsageError(f"cannot listen on {listen.url}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def bound_url(sock: socket.socket) -> str:
    """``tcp://HOST:PORT`` of a bound socket (the actual port)."""
    host, port = sock.getsockname()[:2]
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
