"""Run ``moto_server`` with one fix to its IAM signature check (test support).

Usage: ``python moto_launcher.py -H 127.0.0.1 -p PORT`` (the arguments of ``moto_server``).

moto (5.x) recomputes a request's SigV4 signature from the query string as its web
server decoded it (``prefix=root/``), while clients sign the percent-encoded form
(``prefix=root%2F``): while authentication is on, every listing under a prefix would be
refused with ``SignatureDoesNotMatch``. The query is re-encoded the way botocore encodes
it before moto signs it. Should moto's internals change, the server still runs unpatched
(and the tests that authenticate then show the bug instead of hiding it).
"""

import sys
from urllib.parse import quote, unquote


def _reencode(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        pairs.append(quote(unquote(key), safe="-_.~") + eq + quote(unquote(value), safe="-_.~"))
    return "&".join(pairs)


def _patch() -> None:
    try:
        from moto.iam import access_control
    except ImportError:
        return
    base = getattr(access_control, "IAMRequestBase", None)
    original = getattr(base, "__init__", None)
    if base is None or original is None:
        return

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        path = getattr(self, "_path", None)
        if isinstance(path, str) and "?" in path:
            head, _, query = path.partition("?")
            self._path = f"{head}?{_reencode(query)}"

    base.__init__ = init


def main() -> None:
    _patch()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
