"""``python -m cryostash``."""

import sys

from cryostash.cli import main

sys.exit(main())
