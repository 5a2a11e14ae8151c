"""Whether this kernel offers the userfaultfd features CRIU's lazy restore needs, asked of
the kernel directly (microseconds) instead of through ``criu check`` (a process, ~50 ms).

Contract: :func:`noncoop_support` opens a userfaultfd (the ``userfaultfd(2)`` system call),
asks its API (``UFFDIO_API``) which features the kernel has, closes it, and answers
True when all of :data:`NONCOOP_FEATURES` are there (CRIU's ``uffd-noncoop`` check: fork,
mremap, munmap and madvise(REMOVE) events of the restored tree reach the lazy-pages
daemon), False when the call or a feature is missing or refused (no
``CONFIG_USERFAULTFD``; ``vm.unprivileged_userfaultfd = 0`` without ``CAP_SYS_PTRACE``;
a seccomp filter), and None on an architecture whose system-call number it does not know
(the caller then asks ``criu check``). Never raises.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

#: userfaultfd(2)'s number per machine (``uname -m``).
SYSCALL = {"x86_64": 323, "aarch64": 282, "ppc64le": 364, "s390x": 355, "riscv64": 282}
#: UFFD_FEATURE_EVENT_FORK | EVENT_REMAP | EVENT_REMOVE | EVENT_UNMAP (linux/userfaultfd.h).
NONCOOP_FEATURES = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6)
UFFD_API = 0xAA
#: _IOWR(0xAA, 0x3F, struct uffdio_api), the struct being three u64 (api, features, ioctls).
UFFDIO_API = 0xC018AA3F


def noncoop_support() -> bool | None:
    """True/False: the kernel has/lacks non-cooperative userfaultfd; None: unknown here."""
    number = SYSCALL.get(os.uname().machine)
    if number is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK))
    except (OSError, AttributeError):
        return False
    if fd < 0:
        return False
    try:
        answer = bytearray(struct.pack("QQQ", UFFD_API, 0, 0))
        fcntl.ioctl(fd, UFFDIO_API, answer, True)
        _api, features, _ioctls = struct.unpack("QQQ", answer)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(int(features) & NONCOOP_FEATURES == NONCOOP_FEATURES)
