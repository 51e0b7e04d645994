"""`python -m agents worker -l info`: a leadpulse worker (the Faust CLI, with our app and agents).

`LEADPULSE_PROFILE=FILE` runs the worker under cProfile and writes the stats to FILE when it stops
(for `make bench…` profiling; never in production)."""

import os
import sys

import agents.scoring  # noqa: F401  (registers the agents with the app)
from streams import logs
from streams.admin import ensure_topics_sync
from streams.app import app, settings

if len(sys.argv) > 1 and sys.argv[1] == "worker":
    ensure_topics_sync(settings)
    if logs.json_enabled():
        sys.argv.insert(1, "--quiet")  # JSON logs: no startup banner on stdout
profile_to = os.environ.get("LEADPULSE_PROFILE")
if profile_to:
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        app.main()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)
else:
    app.main()
