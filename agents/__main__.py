"""`python -m agents worker -l info`: a leadpulse worker (the Faust CLI, with our app and agents)."""

import agents.scoring  # noqa: F401  (registers the agents with the app)
from streams.app import app

app.main()
