"""`leadpulse rules check FILE`: validate a rules file and say, in plain words, what it would do.

Exit 0 when valid; 1 with one line naming the offending key when not (e.g.
`rules.temperature.hot: must be > warm`); 2 when the file cannot be read.
"""

from __future__ import annotations

from tools.common import FAILED, CliError, readable_file


def _window(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def describe(rules) -> dict:
    """Everything `rules check` prints, as plain data (also its --json)."""
    t = rules.temperature
    f = rules.fit
    entries = []
    for et, pts in rules.points.items():
        if pts:
            cap = rules.caps.get(et)
            entries.append({"name": et, "event_type": et, "match": {}, "points": _num(pts), "replace": False,
                            "cap": None if cap is None else {"points": _num(cap.points), "window": _window(cap.window_ms)},
                            "kind": "base points"})
    for r in rules.rules:
        entries.append({"name": r.name, "event_type": r.event_type,
                        "match": {prop: rx.pattern for prop, rx in r.match}, "points": _num(r.points),
                        "replace": r.replace,
                        "cap": None if r.cap is None else {"points": _num(r.cap.points), "window": _window(r.cap.window_ms)},
                        "kind": "property rule", "description": r.description})
    entries.sort(key=lambda e: (-abs(e["points"]), e["name"]))
    caps = [{"applies_to": e["name"], **e["cap"]} for e in entries if e["cap"]]
    a, b, c = f.grade_cutoffs
    return {
        "valid": True,
        "source": rules.source,
        "version": rules.version,
        "half_life_days": _num(rules.half_life_days),
        "late_tolerance_days": _num(rules.late_tolerance_days),
        "total_cap": _num(rules.total_cap),
        "temperature": {
            "warm": _num(t.warm), "hot": _num(t.hot), "hysteresis": _num(t.hysteresis),
            "warm_cools_below": _num(t.warm - t.hysteresis), "hot_cools_below": _num(t.hot - t.hysteresis),
        },
        "mql": {"min_score": _num(rules.mql_min_score), "min_grade": rules.mql_min_grade},
        "grades": {"A": _num(a), "B": _num(b), "C": _num(c)},
        "sql": {name: {"criteria": list(fw.criteria), "min_met": fw.min_met} for name, fw in rules.frameworks.items()},
        "rules": entries,
        "caps": caps,
        "fit": {
            "professional_email": _num(f.professional_email_points), "free_mail": _num(f.free_mail_points),
            "competitor": _num(f.competitor_points), "missing_email": _num(f.missing_email_points),
            "free_mail_domains": len(f.free_mail_domains), "competitor_domains": list(f.competitor_domains),
            "target_industries": list(f.target_industries), "target_countries": list(f.target_countries),
        },
    }


def render(d: dict, top: int) -> None:
    from rich.table import Table

    from tools.common import console, table

    out = console()
    t = d["temperature"]
    h = d["half_life_days"]
    strongest = next((e for e in d["rules"] if e["points"] > 0), None)
    out.print(f"[green]valid[/green]: {d['source']}")
    kv = Table.grid(padding=(0, 2))
    kv.add_column(style="bold")
    kv.add_column()
    kv.add_row("version", d["version"])
    decay = f"points halve every {h:g} days"
    if strongest:
        p = strongest["points"]
        decay += f" (a {strongest['name']} worth {p:g} today is worth {p / 2:g} after {h:g} days, {p / 4:g} after {2 * h:g})"
    kv.add_row("decay", decay)
    kv.add_row("late events", f"scored exactly up to {d['late_tolerance_days']:g} days late (event time); older ones are rejected")
    kv.add_row("engagement cap", f"{d['total_cap']:g} points")
    kv.add_row("temperature", f"warm at ≥ {t['warm']:g}, hot at ≥ {t['hot']:g}; hysteresis {t['hysteresis']:g}: "
                              f"hot cools to warm below {t['hot_cools_below']:g}, warm to cold below {t['warm_cools_below']:g}")
    g = d["grades"]
    kv.add_row("MQL", f"score ≥ {d['mql']['min_score']:g} and fit grade {d['mql']['min_grade']} or better "
                      f"(fit grades: A ≥ {g['A']:g}, B ≥ {g['B']:g}, C ≥ {g['C']:g}, else D)")
    sql = "; ".join(f"{n}: {fw['min_met']} of {len(fw['criteria'])} criteria ({', '.join(fw['criteria'])})"
                    for n, fw in d["sql"].items())
    kv.add_row("SQL", f"an MQL whose sales criteria are met — {sql} — or that sales accepts")
    fit = d["fit"]
    kv.add_row("fit e-mail", f"professional {fit['professional_email']:+g}, free-mail {fit['free_mail']:+g} "
                             f"({fit['free_mail_domains']} domains), competitor {fit['competitor']:+g} "
                             f"({', '.join(fit['competitor_domains']) or 'none'}), missing {fit['missing_email']:+g}")
    out.print(kv)
    rules = d["rules"][:top] if top else d["rules"]
    rt = table("rule", "event type", "when", "points", "base points", "cap", right=("points",),
               nowrap=("rule", "event type", "base points"),
               title=f"rules by points ({len(rules)} of {len(d['rules'])})")
    for e in rules:
        when = ", ".join(f"{k} ~ {v}" for k, v in e["match"].items()) or "always"
        cap = f"{e['cap']['points']:g} per {e['cap']['window']}" if e["cap"] else ""
        colour = "green" if e["points"] > 0 else "red"
        base = "-" if e["kind"] == "base points" else "replaced" if e["replace"] else "kept"
        rt.add_row(e["name"], e["event_type"], when, f"[{colour}]{e['points']:+g}[/{colour}]", base, cap)
    out.print(rt)
    if d["caps"]:
        out.print("caps: " + "; ".join(f"{c['applies_to']} at most {c['points']:g} per {c['window']}" for c in d["caps"]))


def add_parser(sub, common) -> None:
    import argparse

    p = sub.add_parser("rules", parents=[common], help="work with scoring rules files",
                       description="Work with scoring rules files.")
    rs = p.add_subparsers(dest="rules_command", required=True)
    c = rs.add_parser("check", parents=[common], help="validate a rules file and describe what it would do",
                      description=__doc__.split("\n\n", 1)[1] if "\n\n" in __doc__ else __doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("file", metavar="FILE", help="TOML rules file ('default' for the built-in rules)")
    c.add_argument("--top", type=int, default=10, help="rules listed, strongest first (default 10; 0: all)")
    c.add_argument("--json", action="store_true", help="print the description as JSON")
    c.set_defaults(func=run)


def run(args) -> int:
    from scoring import RulesError, default_rules, load_rules
    from tools.common import print_json

    if args.file == "default" and not __import__("pathlib").Path("default").exists():
        rules = default_rules()
    else:
        readable_file(args.file, "rules file")
        try:
            rules = load_rules(args.file)
        except RulesError as exc:
            if args.json:
                print_json({"valid": False, "source": args.file, "key": exc.key_path, "reason": exc.reason})
            raise CliError(f"rules file {args.file}: {exc.key_path}: {exc.reason}", FAILED) from None
    d = describe(rules)
    if args.json:
        print_json(d)
    else:
        render(d, args.top)
    return 0
