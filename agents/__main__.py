"""`python -m agents worker -l info`: a leadpulse worker (the Faust CLI, with our app and agents).

Before the app is even built, a worker checks its settings, its data directory and its broker
(reachable, credentials accepted): a mistake is one line `leadpulse: error: ...` and exit 2, with
nothing written, instead of a traceback or a worker retrying forever.

`LEADPULSE_PROFILE=FILE` runs the worker under cProfile and writes the stats to FILE when it stops
(for `make bench…` profiling; never in production)."""

import os
import sys

from streams.preflight import PreflightError, check_worker
from streams.settings import Settings, SettingsError


def fail(message: object) -> None:
    print(f"leadpulse: error: {message}", file=sys.stderr)
    sys.exit(2)


is_worker = len(sys.argv) > 1 and sys.argv[1] == "worker"
if is_worker and not any(a in ("-h", "--help") for a in sys.argv[2:]):
    try:
        check_worker(Settings.from_env())
    except (SettingsError, PreflightError) as exc:
        fail(exc)

import agents.scoring  # noqa: E402,F401  (registers the agents with the app)
from streams import logs  # noqa: E402
from streams.admin import ensure_topics_sync  # noqa: E402
from streams import restore, statedir  # noqa: E402
from streams.app import app, contacts, settings  # noqa: E402

if is_worker:
    from aiokafka.errors import KafkaError

    try:
        ensure_topics_sync(settings)
    except KafkaError as exc:  # e.g. the user may not create topics (ACLs)
        fail(f"cannot create the topics on Kafka at {settings.bootstrap_servers} as {settings.kafka_identity()}: "
             f"{type(exc).__name__}: {exc}")
    if logs.json_enabled():
        sys.argv.insert(1, "--quiet")  # JSON logs: no startup banner on stdout


def run() -> None:
    """Faust's CLI; the data directory is released only when the worker stops cleanly (exit 0)."""
    if not is_worker:
        app.main()
        return
    statedir.claim(settings.data_dir, app.conf.tabledir, drop_if_unclean=settings.processing_guarantee == "exactly_once")
    if settings.restore_at_start:
        restore.restore_before_start(contacts.data, contacts.changelog_topic.get_topic_name(), settings)
    try:
        app.main()
    except SystemExit as exc:
        if exc.code in (0, None):
            statedir.release(settings.data_dir)
        raise


profile_to = os.environ.get("LEADPULSE_PROFILE")
if profile_to:
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)
else:
    run()
