"""`python -m collector`: the HTTP collector (settings from the environment; see README, Collector)."""

import sys

from collector.main import main

sys.exit(main())
