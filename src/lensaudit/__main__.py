"""``python -m lensaudit``: the same command line as the ``lensaudit`` script."""

import sys

from lensaudit.cli import main

sys.exit(main())
