"""``python -m sgdnoise``: the command line (how the workflow's rules call it)."""

import sys

from sgdnoise.cli import main

sys.exit(main())
