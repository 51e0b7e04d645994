"""`leadpulse explain CONTACT_ID`: why a contact has its score, asked of a running worker.

GET {url}/contacts/{id} on the worker's lookup API (any worker: it routes the request to the one that
owns the contact) and show the score, temperature, stage, fit grade and each rule's contribution,
largest first.  `--json` prints the worker's JSON unchanged.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from tools.common import BAD_INPUT, FAILED, CliError, duration, iso, now_ms

FIELDS = ("contact_id", "at", "score", "engagement", "fit", "grade", "temperature", "stage", "explanation",
          "rules_version")


def default_url() -> str:
    from tools.common import settings

    s = settings()
    return f"http://{s.web_host}:{s.web_port}"


def lookup(url: str, contact_id: str, timeout: float = 5.0, token: str | None = None) -> tuple[dict, str]:
    """(parsed JSON, raw body) of the worker's answer; CliError on anything else. `token`: the
    bearer token of the lookup API (streams.webauth), by default $LEADPULSE_API_TOKEN."""
    base = url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"--url {url!r}: expected http://HOST:PORT")
    target = f"{base}/contacts/{urllib.parse.quote(contact_id, safe='')}"
    headers = {"Accept": "application/json"}
    if token is None:
        from tools.common import settings

        secret = settings().api_token
        token = secret.reveal() if secret is not None else None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(target, headers=headers), timeout=timeout) as resp:
            raw = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        if exc.code == 404:
            raise CliError(f"unknown contact {contact_id!r} (worker at {base})", FAILED) from None
        if exc.code in (401, 403):
            raise CliError(f"worker at {base} refused the lookup (HTTP {exc.code}): set LEADPULSE_API_TOKEN to a "
                           f"token with the read role (README, Authentication of the lookup API)") from None
        detail = ""
        try:
            detail = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            detail = " ".join(body.split())[:200]
        raise CliError(f"worker at {base} answered HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        why = getattr(reason, "strerror", None) or str(reason)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            why = f"no answer within {timeout:g} s"
        raise CliError(f"cannot reach the worker at {base}: {why} (is `leadpulse worker` running? see --url)") from None
    except (socket.timeout, TimeoutError):
        raise CliError(f"cannot reach the worker at {base}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise CliError(f"cannot reach the worker at {base}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise CliError(f"worker at {base}: the answer is not JSON ({' '.join(raw.split())[:80]!r})") from None
    missing = [f for f in FIELDS if not isinstance(data, dict) or f not in data]
    if missing:
        raise CliError(f"worker at {base}: the answer lacks {', '.join(missing)} (is it a leadpulse worker?)")
    return data, raw


def render(data: dict, top: int | None = None) -> None:
    from tools.common import console, table

    out = console()
    out.print(f"contact [bold]{data['contact_id']}[/bold]: score [bold]{data['score']:.1f}[/bold] "
              f"(engagement {data['engagement']:.1f} + fit {data['fit']:.1f}, grade {data['grade']})")
    ago = now_ms() - data["at"]
    when = f"{iso(data['at'])} ({duration(ago)} ago)" if ago >= 60_000 else iso(data["at"])
    out.print(f"temperature [bold]{data['temperature']}[/bold], stage [bold]{data['stage']}[/bold]; "
              f"evaluated at {when}; rules {data['rules_version']}")
    parts = sorted(data["explanation"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    total = sum(abs(v) for _, v in parts) or 1.0
    t = table("rule", "contribution", "share", right=("contribution", "share"), nowrap=("rule",))
    shown = parts if not top else parts[:top]
    for name, v in shown:
        colour = "green" if v > 0 else "red" if v < 0 else "dim"
        t.add_row(name, f"[{colour}]{v:+.2f}[/{colour}]", f"{100 * abs(v) / total:.1f} %")
    if len(shown) < len(parts):
        rest = sum(v for _, v in parts[len(shown):])
        t.add_row(f"({len(parts) - len(shown)} more)", f"{rest:+.2f}", "")
    t.add_row("[bold]score[/bold]", f"[bold]{data['score']:.2f}[/bold]", "")
    out.print(t)


def add_parser(sub, common) -> None:
    import argparse

    p = sub.add_parser("explain", parents=[common], help="show why a contact has its score (asks a running worker)",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("contact_id", metavar="CONTACT_ID")
    p.add_argument("--url", default=None,
                   help="a worker's lookup API (default http://$LEADPULSE_WEB_HOST:$LEADPULSE_WEB_PORT, i.e. 127.0.0.1:6066)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the worker (default 5)")
    p.add_argument("--top", type=int, default=None, help="show only the N largest contributions")
    p.add_argument("--json", action="store_true", help="print the worker's JSON unchanged")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.contact_id.strip():
        raise CliError("CONTACT_ID is empty", BAD_INPUT)
    data, raw = lookup(args.url or default_url(), args.contact_id, args.timeout)
    if args.json:
        print(raw.rstrip("\n"))
    else:
        render(data, args.top)
    return 0
