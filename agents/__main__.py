"""`python -m agents worker -l info`: a leadpulse worker (the Faust CLI, with our app and agents)."""

import sys

import agents.scoring  # noqa: F401  (registers the agents with the app)
from streams.admin import ensure_topics_sync
from streams.app import app, settings

if len(sys.argv) > 1 and sys.argv[1] == "worker":
    ensure_topics_sync(settings)
app.main()
