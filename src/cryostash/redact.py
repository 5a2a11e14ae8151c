"""The one redaction rule (a leaf): what cryostash shows never holds a secret.

A secret is:

- the user-info of a URL (``s3://KEY:SECRET@bucket``, ``postgresql://u:pw@h/db``);
- the value of a secret-looking key (:data:`SECRET_KEY`: ``password``, ``secret``,
  ``token``, ``key``, ``credential``, ``signature``, ``auth``...) in a URL's query
  (``?password=...``), in storage options, in a ``KEY=VALUE`` text;
- any value :func:`remember`-ed: the settings register every secret they were given
  (storage options with secret-looking keys, passwords of URLs, the AWS secret
  environment), so that a library's message repeating one (botocore does) is cleaned too.
  In free text a remembered value is masked where it stands as a whole token (not inside
  a longer word), and an ordinary word (letters only, shorter than :data:`WORD_MAX`) not
  at all: a passphrase ``wrong`` must not turn "wrong passphrase" into "*** passphrase".
  Such a value is still masked where secrets appear: URL user-info, secret-looking
  ``key=value`` pairs, storage options (the first two rules, :func:`redact_options`).

:func:`redact_text` applies all three to any text before it is shown (messages, errors,
events, JSON output, doctor); :func:`redact_options` gives the printable view of storage
options; :func:`child_env` is the environment of every child process cryostash starts
(CRIU, runc, podman, docker, ssh): this process's without cryostash's secrets.
:func:`escape` makes stored or remote text safe for a terminal (control characters as
``\\xNN`` escapes); JSON output is exact and never goes through it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

#: Keys whose values are secrets (query parameters, storage options, ``KEY=VALUE``).
SECRET_KEY = re.compile(
    r"pass|secret|token|key|credential|signature|sig$|auth|cookie|session", re.IGNORECASE
)
#: What a secret is replaced with.
MASK = "***"
#: ``scheme://user-info@`` in any text. Both patterns start only where a run of their
#: characters starts (the look-behind): a long alphanumeric run is scanned once, not once
#: per position (linear time: an 80,000-character member name took 17 s without it).
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s'\"]*@"
)
#: ``key=value`` (in a query string or free text) whose key looks secret (the key is the
#: whole run of key characters before ``=``: ``9token=`` and ``x.auth=`` are keys too).
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]+)(?P<sep>=\s*['\"]?)(?P<value>[^&\s,;'\")}]+)"
)
#: Environment variables never passed to a child process (secrets of cryostash's own
#: configuration and of the store's libraries), by prefix or exact name.
_CHILD_DROP_PREFIXES = ("AWS_", "CRYOSTASH_", "PG", "AZURE_", "GOOGLE_", "GCS_", "FSSPEC_")
_CHILD_KEEP = frozenset({"PGDATA"})
#: Control characters (C0, DEL, C1) and the Unicode line/bidi controls a terminal obeys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

_known: set[str] = set()
_lock = threading.Lock()
#: Shortest value remembered as a secret (shorter ones would mask ordinary words).
MIN_SECRET = 4
#: A remembered value of letters only and shorter than this is an ordinary word: it is
#: not masked in free text (only by the URL and ``key=value`` rules).
WORD_MAX = 16
_WORD = re.compile(rf"[^\W\d_]{{1,{WORD_MAX - 1}}}")
#: What may not touch a remembered value for it to stand as a whole token.
_TOKEN_EDGE = r"[^\W_]"


def remember(*secrets: object) -> None:
    """Register values that must never be shown (too short or empty ones are ignored)."""
    with _lock:
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET:
                _known.add(secret)


def remember_options(options: Mapping[str, Any]) -> None:
    """Register the secret values of storage options (nested tables included)."""
    for key, value in options.items():
        if isinstance(value, Mapping):
            remember_options(value)
        elif SECRET_KEY.search(str(key)):
            remember(str(value))


def remember_env(env: Mapping[str, str]) -> None:
    """Register the secrets of an environment: AWS keys and tokens, passwords."""
    for key, value in env.items():
        if key.startswith(("AWS_", "CRYOSTASH_", "PG")) and SECRET_KEY.search(key):
            remember(value)


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Storage options as they may be shown: secret-looking values are :data:`MASK`."""
    shown: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            shown[key] = redact_options(value)
        elif SECRET_KEY.search(str(key)):
            shown[key] = MASK
        else:
            shown[key] = redact_text(str(value)) if isinstance(value, str) else value
    return shown


#: A placeholder in a usage message (``KEY=VALUE``, ``secret=SECRET``), not a secret.
_PLACEHOLDER = re.compile(r"[A-Z_]{1,12}")


def _pair(match: re.Match[str]) -> str:
    if SECRET_KEY.search(match.group("key")) and not _PLACEHOLDER.fullmatch(
        match.group("value")
    ):
        return f"{match.group('key')}{match.group('sep')}{MASK}"
    return match.group(0)


def redact_text(text: str) -> str:
    """``text`` without secrets: URL user-info dropped, secret-looking ``key=value``
    values and every remembered secret standing as a whole token (ordinary words aside:
    see the module docstring) replaced by :data:`MASK`.

    >>> redact_text("cannot open s3://AKIA:pw@b/x?token=t1&region=eu")
    'cannot open s3://b/x?token=***&region=eu'
    """
    if "://" in text:
        text = _USERINFO.sub(r"\g<scheme>", text)
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text and not _WORD.fullmatch(secret):
            pattern = rf"(?<!{_TOKEN_EDGE}){re.escape(secret)}(?!{_TOKEN_EDGE})"
            text = re.sub(pattern, MASK, text)
    return text


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (an engine's binary, ssh): ``env`` (default
    this process's) without cryostash's configuration (``CRYOSTASH_*``), cloud and
    database credentials (``AWS_*``, ``AZURE_*``, ``GOOGLE_*``, ``PG*``...) and any
    variable whose name looks secret or whose value holds a remembered secret."""
    env = os.environ if env is None else env
    with _lock:
        known = tuple(_known)
    kept: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith(_CHILD_DROP_PREFIXES) and key not in _CHILD_KEEP:
            continue
        if SECRET_KEY.search(key) and key not in ("SSH_AUTH_SOCK", "XAUTHORITY"):
            continue
        if any(secret in value for secret in known) or _USERINFO.search(value):
            continue
        kept[key] = value
    return kept


def escape(text: object) -> str:
    """``text`` safe for a terminal: control characters (newline, ESC, DEL, C1, Unicode
    line and bidi controls) shown as ``\\xNN``/``\\uNNNN`` escapes, the rest unchanged."""
    return _CONTROL.sub(_escape_one, str(text))


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_control(text: str) -> bool:
    """True if ``text`` holds a character :func:`escape` would escape."""
    return _CONTROL.search(text) is not None
