"""Installing what the engines need on a host (apart from the engines' runtime code):
a CRIU >= 4.2 (:mod:`~cryostash.install.criu`, from Debian packages by
:mod:`~cryostash.install.debian`). Run ``python -m cryostash.install.criu``."""
