"""`python -m agents worker -l info`: a leadpulse worker (the Faust CLI, with our app and agents).

Before the app is even built, a worker checks its settings, the installed Faust and aiokafka (the
versions streams.compat's patches target), its data directory and its broker (reachable,
credentials accepted), then creates its topics and checks their partition counts: a mistake is one
line `leadpulse: error: ...` and exit 2, with nothing written, instead of a traceback or a worker
retrying forever. Then `streams.bootstrap` builds the worker, the table store is brought up to the
end of its changelog, and Faust's command line runs it.

`LEADPULSE_PROFILE=FILE` runs the worker under cProfile and writes the stats to FILE when it stops
(for `make bench…` profiling; never in production)."""

import os
import sys

from streams.compat import CompatError, check_versions
from streams.preflight import PreflightError, check_worker
from streams.settings import Settings, SettingsError


def fail(message: object) -> None:
    print(f"leadpulse: error: {message}", file=sys.stderr)
    sys.exit(2)


def prepare(settings: Settings) -> None:
    """Everything that must hold before the worker is built (exit 2 with one line otherwise)."""
    from aiokafka.errors import KafkaError

    from streams.admin import TopicLayoutError, ensure_topics_sync

    try:
        check_versions()
        check_worker(settings)
        ensure_topics_sync(settings)
    except (CompatError, PreflightError, TopicLayoutError) as exc:
        fail(exc)
    except KafkaError as exc:  # e.g. the user may not create topics (ACLs)
        fail(f"cannot create the topics on Kafka at {settings.bootstrap_servers} as {settings.kafka_identity()}: "
             f"{type(exc).__name__}: {exc}")


def run() -> None:
    is_worker = len(sys.argv) > 1 and sys.argv[1] == "worker"
    helping = any(a in ("-h", "--help") for a in sys.argv[2:])
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(exc)
    if is_worker and not helping:
        prepare(settings)
    from streams import logs, restore
    from streams.bootstrap import bootstrap

    rt = bootstrap(settings)
    if is_worker and logs.json_enabled():
        sys.argv.insert(1, "--quiet")  # JSON logs: no startup banner on stdout
    if is_worker and not helping and settings.restore_at_start:
        restore.restore_before_start(rt.contacts.data, rt.changelog, settings)
    rt.app.main()


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
