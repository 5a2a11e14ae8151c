"""Operations: verbs built on the manager and the repository it works on.

``gc`` (:mod:`~cryostash.operations.gc`), ``verify``, ``catalog rebuild``, ``prune``,
live migration (``migrate`` and its ``destination``) and ``doctor``. Each module is
imported on its own, when its verb runs; this package imports nothing.
"""
