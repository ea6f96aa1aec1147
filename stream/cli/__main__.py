"""`python -m stream.cli ...` is the `emostream` command."""

import sys

from .main import main

sys.exit(main())
