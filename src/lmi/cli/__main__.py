"""``python -m lmi.cli``: the same as the ``lmi`` command."""

import sys

from lmi.cli import main

sys.exit(main())
