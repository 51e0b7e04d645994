"""`leadpulse`: one command line for marketing ops and developers.

    leadpulse worker [FAUST WORKER ARGS]       run a scoring worker (settings from the environment)
    leadpulse collector [--check]              the HTTP collector (Segment API, HubSpot, Mautic)
    leadpulse kafka start|stop|status|wipe     the local development broker
    leadpulse simulate ...                     a realistic synthetic funnel, to Kafka or an Avro file
    leadpulse backtest --rules A [--compare B] replay history through the scoring core, offline
    leadpulse explain CONTACT_ID               why a contact has its score (asks a running worker)
    leadpulse rules check FILE                 validate a rules file and say what it would do

Exit codes: 0 ok; 1 the thing checked failed (invalid rules, broker not running, unknown contact);
2 usage error, bad input, or an unreachable broker or worker.  Errors are one line on stderr;
`--debug` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from tools.common import BAD_INPUT, FAILED, CliError, console

PROG = "leadpulse"


# ============================================================================ worker

WORKER_HELP = """Start a leadpulse scoring worker: the same as `python -m agents worker -l info`
(topics are created first), with every setting read from the environment.  The process is
replaced by the worker (exec), so signals (Ctrl-C, SIGTERM from an orchestrator) reach it directly.

Arguments after `worker` are handed to Faust's worker command (e.g. `-l debug`, `--web-port 6067`);
`leadpulse worker -- --help` shows them.  The log level defaults to $LEADPULSE_LOG_LEVEL (info).

Before starting, leadpulse checks the settings, the rules file ($LEADPULSE_RULES) and that the
broker answers, so a mistake is one clear line instead of a worker crash.
"""


def _settings_epilog(kind: str = "worker") -> str:
    """The settings in effect, for a command's --help (secrets show as ***)."""
    from streams.settings import CollectorSettings, Settings, SettingsError

    try:
        described = (CollectorSettings if kind == "collector" else Settings).from_env().describe()
    except SettingsError as exc:
        return f"settings: cannot be read: {exc}"
    width = max(len(k) for k in described)
    title = "collector settings" if kind == "collector" else "settings"
    lines = [f"{title} now in effect (from the environment):"]
    lines += [f"  {k:<{width}}  {v}" for k, v in described.items()]
    return "\n".join(lines)


def run_worker(args, faust_args: list[str]) -> int:
    from tools.common import check_broker, load_rules_arg, settings

    if faust_args and faust_args[0] == "--":
        faust_args = faust_args[1:]
    wants_help = any(a in ("-h", "--help") for a in faust_args)
    if not wants_help:
        s = settings()
        if s.rules_path:
            load_rules_arg(s.rules_path, "rules file ($LEADPULSE_RULES)")
        check_broker(s.bootstrap_servers)
        if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") or (a.startswith("-l") and len(a) > 2)
                   for a in faust_args):
            faust_args = ["-l", s.log_level, *faust_args]
    argv = [sys.executable, "-m", "agents", "worker", *faust_args]
    sys.stdout.flush()
    sys.stderr.flush()
    execv = os.execv
    try:
        execv(sys.executable, argv)
    except OSError as exc:
        raise CliError(f"cannot start the worker ({sys.executable}): {exc.strerror or exc}") from None
    return 0  # only reached when execv is replaced (tests)


# ============================================================================ collector

COLLECTOR_HELP = """Start the HTTP collector: the Segment HTTP Tracking API (/v1/track, /v1/page,
/v1/identify, /v1/group, /v1/alias, /v1/batch; the write key by HTTP Basic), HubSpot and Mautic
webhooks, /health and /metrics, publishing to leadpulse's topics and answering only once the
broker has acknowledged.  Settings come from the environment (README, Collector); the same as
`python -m collector`.  The process is replaced by the collector (exec), so signals reach it.

Before starting, leadpulse checks the settings, the mapping file ($LEADPULSE_COLLECTOR_MAPPING),
the write keys, the TLS files and that the broker answers.  --check stops there.
"""


def add_collector(sub, common) -> None:
    p = sub.add_parser("collector", parents=[common], help="run the HTTP collector (Segment API, HubSpot and "
                       "Mautic webhooks)", description=COLLECTOR_HELP, epilog=_settings_epilog("collector"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="check everything, print what would run, and exit")
    p.set_defaults(func=run_collector)


def run_collector(args) -> int:
    from collector.main import StartError, load_config
    from tools.common import check_kafka

    try:
        config = load_config()
    except StartError as exc:
        raise CliError(str(exc)) from None
    check_kafka(config.settings.bootstrap_servers)
    if args.check:
        print(config.summary())
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "collector"])
    except OSError as exc:
        raise CliError(f"cannot start the collector ({sys.executable}): {exc.strerror or exc}") from None
    return 0  # only reached when execv is replaced (tests)


# ============================================================================ kafka

def add_kafka(sub, common) -> None:
    p = sub.add_parser("kafka", parents=[common], help="start, stop, inspect or wipe the local development broker",
                       description="Manage the local single-node KRaft Kafka broker (127.0.0.1 only, no Docker; "
                                   "needs Java 17+ and Maven the first time). Same as `python -m streams.localkafka`.")
    p.add_argument("action", choices=("start", "stop", "status", "wipe"),
                   help="start (prints the bootstrap address), stop, status (exit 1 when stopped), "
                        "wipe (stop and delete all topics and data)")
    p.add_argument("--dir", default=None, help="state dir (default: $LEADPULSE_KAFKA_DIR or <repo>/.leadpulse/kafka)")
    p.add_argument("--port", type=int, default=None, help="broker port (default: $LEADPULSE_KAFKA_PORT or a free one)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the broker to start (default 90)")
    p.add_argument("--json", action="store_true", help="print the broker status as JSON")
    p.set_defaults(func=run_kafka)


def run_kafka(args) -> int:
    from streams.localkafka import DEFAULT_TIMEOUT, LocalKafka, LocalKafkaError
    from tools.common import print_json

    out = console()
    try:
        kafka = LocalKafka(state_dir=args.dir, port=args.port)
        if args.action == "start":
            err = console(stderr=True)
            if err.is_terminal and not args.json:
                with err.status("starting the local Kafka broker (the first start downloads it with Maven)…"):
                    bootstrap = kafka.start(timeout=args.timeout or DEFAULT_TIMEOUT)
            else:
                bootstrap = kafka.start(timeout=args.timeout or DEFAULT_TIMEOUT)
            if args.json:
                print_json(kafka.status())
            else:
                print(bootstrap)
                if out.is_terminal:
                    out.print(f"[dim]export KAFKA_BOOTSTRAP_SERVERS={bootstrap}[/dim]")
            return 0
        if args.action in ("stop", "wipe"):
            stopped = kafka.stop()
            if args.action == "wipe":
                kafka.wipe()
            if args.json:
                print_json({"stopped": stopped, "wiped": args.action == "wipe", **kafka.status()})
            else:
                what = "stopped" if stopped else "not running"
                print(f"{what}{'; data wiped' if args.action == 'wipe' else ''} ({kafka.state_dir})")
            return 0
        st = kafka.status()
        if args.json:
            print_json(st)
        else:
            extra = f" {st['bootstrap']} pid {st['pid']}" if st["running"] else ""
            print(f"{st['state']}{extra} ({st['state_dir']})")
        return 0 if st["running"] else FAILED
    except LocalKafkaError as exc:
        if getattr(args, "debug", False) and exc.log_tail:
            print(exc.log_tail, file=sys.stderr)
        raise CliError(f"local Kafka: {exc}") from exc


# ============================================================================ parser

def build_parser() -> argparse.ArgumentParser:
    from tools import backtest, explain, rules_check, simulate

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    w = sub.add_parser("worker", help="run a scoring worker (settings from the environment)",
                       description=WORKER_HELP, epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage=f"{PROG} worker [-h] [FAUST WORKER ARGS ...]")
    w.set_defaults(func=None)
    add_collector(sub, common)
    add_kafka(sub, common)
    simulate.add_parser(sub, common)
    backtest.add_parser(sub, common)
    explain.add_parser(sub, common)
    rules_check.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        debug = bool(getattr(args, "debug", False))
        if args.command == "worker":
            return run_worker(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.func(args) or 0)
    except CliError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else BAD_INPUT)
    except Exception as exc:  # a bug, or something we did not foresee: still one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(f"{PROG}: error: {type(exc).__name__}: {' '.join(str(exc).split()) or 'unexpected error'} "
                  f"(run with --debug for the traceback)", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
