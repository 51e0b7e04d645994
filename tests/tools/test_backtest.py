"""`leadpulse backtest`: counts checked against the scoring core directly, chart, report, comparison,
and every way the input can be wrong."""

from __future__ import annotations

import json
import statistics
from collections import Counter

import fastavro
import pytest

from scoring import (BehaviourEvent, ContactProfile, QualificationUpdate, ScoringError, ScoringModel, default_rules,
                     load_rules)
from tests.tools.conftest import END, END_MS, one_error_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def recompute(path, rules, end_ms):
    """The expected results, from the core alone: one record at a time, in file order. An anonymous
    visitor is `anon:<id>` until an event carries both its ids; its state then merges into the contact."""
    model = ScoringModel(rules)
    states, first_event, first_mql, alias, merged = {}, {}, {}, {}, 0
    sqls, converted, decided, refused = set(), set(), set(), 0
    with open(path, "rb") as fh:
        for r in fastavro.reader(fh):
            kind = r["kind"]
            rec = dict(r[kind])
            cid = rec["contact_id"] or f"anon:{rec['anonymous_id']}"
            cid = rec["contact_id"] = alias.get(cid, cid)
            st = states.get(cid)
            try:
                if kind == "behaviour":
                    st, changes = model.apply_event(st, BehaviourEvent(**rec))
                    first_event[cid] = min(first_event.get(cid, rec["occurred_at"]), rec["occurred_at"])
                elif kind == "profile":
                    st, changes = model.apply_profile(st, ContactProfile(**rec))
                else:
                    st, changes = model.apply_qualification(st, QualificationUpdate(**rec))
            except ScoringError:
                refused += 1
                continue
            states[cid] = st
            anon = f"anon:{rec['anonymous_id']}" if kind == "behaviour" and rec["anonymous_id"] else None
            if anon and not cid.startswith("anon:") and anon not in alias:
                alias[anon] = cid
                other = states.pop(anon, None)
                if other is not None:
                    merged += 1
                    st, more = model.merge(st, other, rec["occurred_at"], "m", cid)
                    states[cid] = st
                    changes = changes + more
                    first_event[cid] = min(first_event[cid], first_event.pop(anon))
            for c in changes:
                if c.kind != "stage":
                    continue
                if c.to_value == "mql":
                    first_mql.setdefault(cid, c.at)
                if c.to_value == "sql":
                    sqls.add(cid)
                if c.from_value == "mql" and c.to_value in ("sql", "recycled", "disqualified"):
                    decided.add(cid)
                    if c.to_value == "sql":
                        converted.add(cid)
    temps, stages, scores = Counter(), Counter(), {}
    for cid, st in states.items():
        snap = model.snapshot(st, max(end_ms, st.as_of))
        temps[snap.temperature] += 1
        stages[snap.stage] += 1
        scores[cid] = (snap.stage, snap.score)
    return {
        "contacts": len(states), "temperature": dict(temps), "stages": dict(stages), "mqls": len(first_mql),
        "sqls": len(sqls), "converted": len(converted), "decided": len(decided), "refused": refused,
        "median_ttm": statistics.median(first_mql[c] - first_event[c] for c in first_mql), "final": scores,
        "merged": merged,
        "accounts": Counter(st.account for st in states.values() if st.account),
    }


@pytest.fixture(scope="module")
def single(funnel, tmp_path_factory):
    """One backtest run with every output, shared by the assertions below."""
    from tools.cli import main

    out = tmp_path_factory.mktemp("bt")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["backtest", "--rules", "default", "--events", str(funnel), "--json",
                   "--report", str(out / "report.md"), "--chart", str(out / "chart.png")])
    assert rc == 0
    return json.loads(buf.getvalue()), out


def test_counts_match_the_core(funnel, single):
    res, _ = single
    expected = recompute(funnel, default_rules(), END_MS)
    got = res["rules"][0]
    assert res["end_ms"] == END_MS  # the simulation's end instant, from the file's metadata
    assert got["contacts"] == expected["contacts"]
    assert got["mqls"] == expected["mqls"] > 0
    assert got["sqls"] == expected["sqls"] > 0
    assert got["mql_to_sql"]["converted"] == expected["converted"]
    assert got["mql_to_sql"]["decided"] == expected["decided"] > 0
    assert got["mql_to_sql"]["rate"] == pytest.approx(expected["converted"] / expected["decided"], abs=1e-4)
    assert got["median_time_to_mql_ms"] == expected["median_ttm"]
    assert {k: v for k, v in got["temperature"].items() if v} == expected["temperature"]
    assert {k: v for k, v in got["stages"].items() if v} == expected["stages"]
    assert sum(got["sales_updates_refused"].values()) == expected["refused"]
    # Anonymous browsing before a form: the visitors merged into their contacts; personas at one company.
    assert got["merged"] == expected["merged"] > 0
    assert got["accounts"]["accounts"] == len(expected["accounts"])
    assert got["accounts"]["with_several_contacts"] == sum(1 for n in expected["accounts"].values() if n > 1) > 0


def test_simulated_mqls_are_the_backtests(cli, single, tmp_path):
    """simulate decides who sales works on by replaying each contact through the same core, in delivery
    order: its MQL count is the backtest's, and every sales update fits the stage the contact is in."""
    rc, out, _ = cli("simulate", "--contacts", "800", "--days", "60", "--seed", "7", "--end", END,
                     "--out", tmp_path / "same.avro", "--json")
    assert rc == 0
    res, _ = single
    assert json.loads(out)["mqls_under_simulation_rules"] == res["rules"][0]["mqls"]
    assert res["rules"][0]["sales_updates_refused"] == {}


def test_chart_is_a_valid_png(single):
    _, out = single
    png = out / "chart.png"
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 500
    from PIL import Image

    with Image.open(png) as im:
        im.verify()


def test_report_is_markdown_with_every_section(single):
    res, out = single
    text = (out / "report.md").read_text(encoding="utf-8")
    assert text.startswith("# leadpulse backtest")
    for needle in ("## Results", "MQLs (contacts)", "SQLs (contacts)", "median time to MQL",
                   "MQL → SQL conversion", "### Stages at the end instant", "![daily MQLs and score distribution](chart.png)",
                   f"| MQLs (contacts) | {res['rules'][0]['mqls']:,} |"):
        assert needle in text, needle


def test_compare_with_a_higher_mql_threshold(cli, funnel, strict_rules, tmp_path):
    rc, out, err = cli("backtest", "--rules", "default", "--compare", strict_rules, "--events", funnel, "--json",
                       "--sample", "5", "--report", tmp_path / "r.md")
    assert rc == 0, err
    res = json.loads(out)
    a, b = res["rules"]
    assert b["rules_version"].startswith("strict-75-")
    assert b["mqls"] < a["mqls"]
    d = res["diff"]
    assert d["mql_under_a_only"] > 0 and d["mql_under_b_only"] == 0
    assert d["stage_differs"] > 0 and len(d["sample"]) == 5
    # the differing contacts are exactly those the core puts in different stages
    ea = recompute(funnel, default_rules(), END_MS)["final"]
    eb = recompute(funnel, load_rules(strict_rules), END_MS)["final"]
    differ = {c for c in ea if ea[c][0] != eb[c][0]}
    assert d["stage_differs"] == len(differ)
    for s in d["sample"]:
        assert s["contact_id"] in differ
        assert s["a"]["stage"] == ea[s["contact_id"]][0] and s["b"]["stage"] == eb[s["contact_id"]][0]
    # sales acted on MQLs of A that are still leads under B: the core refuses those moves
    assert sum(b["sales_updates_refused"].values()) > 0
    assert "## A vs B" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_human_output(cli, funnel, strict_rules):
    rc, out, err = cli("backtest", "--compare", strict_rules, "--events", funnel)
    assert rc == 0 and err == ""
    assert "hot / warm / cold" in out and "MQL → SQL" in out and "stage differs for" in out


def test_time_window(cli, funnel):
    rc, out, _ = cli("backtest", "--events", funnel, "--to", "2024-12-01", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["end"] == "2024-12-01T00:00:00Z"
    assert res["input"]["outside window"] > 0
    rc, out2, _ = cli("backtest", "--events", funnel, "--json")
    assert res["rules"][0]["mqls"] < json.loads(out2)["rules"][0]["mqls"]


def test_order_by_event_time(cli, funnel):
    rc, out, _ = cli("backtest", "--events", funnel, "--order", "time", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["order"] == "event time per contact"
    assert res["rules"][0]["mqls"] > 0


def test_a_container_of_plain_behaviour_events_is_accepted(cli, tmp_path):
    from streams.codec import Catalogue, _plain

    cat = Catalogue()
    schema = _plain(cat.raw(cat.writer_id("BehaviourEvent")))
    recs = [{"event_id": f"e{i}", "contact_id": "c1", "anonymous_id": None, "event_type": "demo_request",
             "occurred_at": END_MS - 1000 * i, "source": "crm", "properties": {}} for i in range(3)]
    with open(tmp_path / "events.avro", "wb") as fh:
        fastavro.writer(fh, schema, recs)
    rc, out, err = cli("backtest", "--events", tmp_path / "events.avro", "--json")
    assert rc == 0, err
    r = json.loads(out)["rules"][0]
    assert r["contacts"] == 1 and r["temperature"]["hot"] == 1  # 3 demo requests: 90 points


# -- bad input: one line, exit 2 --------------------------------------------------------------------

def test_missing_events_file(cli, tmp_path):
    rc, _, err = cli("backtest", "--events", tmp_path / "nope.avro")
    assert rc == 2
    assert one_error_line(err).endswith(f"events file {tmp_path / 'nope.avro'}: no such file")


def test_events_file_of_the_wrong_format(cli, tmp_path):
    bad = tmp_path / "x.avro"
    bad.write_text("contact_id,event_type\nc1,demo_request\n")
    rc, _, err = cli("backtest", "--events", bad)
    assert rc == 2
    assert one_error_line(err) == f"leadpulse: error: events file {bad}: not an Avro object container file"


def test_avro_file_of_other_records(cli, tmp_path):
    other = tmp_path / "other.avro"
    with open(other, "wb") as fh:
        fastavro.writer(fh, {"type": "record", "name": "Invoice", "fields": [{"name": "n", "type": "int"}]}, [{"n": 1}])
    rc, _, err = cli("backtest", "--events", other)
    assert rc == 2
    assert "records of type 'Invoice' are not leadpulse inputs" in one_error_line(err)


def test_truncated_events_file(cli, funnel, tmp_path):
    cut = tmp_path / "cut.avro"
    cut.write_bytes(funnel.read_bytes()[: funnel.stat().st_size // 2])
    rc, _, err = cli("backtest", "--events", cut)
    assert rc == 2
    assert f"events file {cut}: corrupt or unexpected Avro data after" in one_error_line(err)


def test_bad_rules_file(cli, funnel, tmp_path):
    from importlib import resources

    bad = tmp_path / "bad.toml"

    src = resources.files("scoring").joinpath("default_rules.toml").read_text(encoding="utf-8")
    bad.write_text(src.replace("\nhot = 60\n", "\nhot = 20\n"), encoding="utf-8")
    rc, _, err = cli("backtest", "--rules", bad, "--events", funnel)
    assert rc == 2
    line = one_error_line(err)
    assert f"rules file {bad}: rules.temperature.hot" in line


def test_source_is_required(cli):
    rc, _, err = cli("backtest", "--rules", "default")
    assert rc == 2
    assert "one of the arguments --events --topic is required" in err


def test_unreachable_broker(cli):
    from tools.runtime import free_port

    rc, _, err = cli("backtest", "--topic", "lead-events", "--bootstrap", f"127.0.0.1:{free_port()}")
    assert rc == 2
    assert "cannot reach Kafka at 127.0.0.1:" in one_error_line(err)


def test_debug_shows_the_traceback(cli, tmp_path):
    rc, _, err = cli("--debug", "backtest", "--events", tmp_path / "nope.avro")
    assert rc == 2
    assert "Traceback" in err and err.rstrip().endswith("no such file")


def test_invalid_events_are_counted_not_fatal(cli, tmp_path):
    """A container of v1 behaviour events (older producers) with the mistakes the worker dead-letters."""
    from streams.codec import Catalogue, _plain

    cat = Catalogue()
    schema = _plain(cat.raw(1))  # BehaviourEvent v1: no source, no anonymous_id
    base = {"event_type": "demo_request", "occurred_at": END_MS, "properties": {}}
    recs = [{**base, "event_id": "e1", "contact_id": ""}, {**base, "event_id": "e2", "contact_id": "c",
                                                            "event_type": "unknown"},
            {**base, "event_id": "", "contact_id": "c"}, {**base, "event_id": "e3", "contact_id": "c"}]
    with open(tmp_path / "v1.avro", "wb") as fh:
        fastavro.writer(fh, schema, recs)
    rc, out, err = cli("backtest", "--events", tmp_path / "v1.avro", "--json")
    assert rc == 0, err
    r = json.loads(out)["rules"][0]
    assert r["contacts"] == 1 and r["events_scored"] == 1
    assert r["events_rejected"] == {"contact_id: empty": 1, "event_type: unknown event type 'unknown'": 1,
                                    "event_id: empty": 1}


def test_links_and_merges_from_the_topics_merge_states_in_delivery_order():
    """What `--topic` hands the replay for IdentityLink and ContactMerge records (kind ALIAS): the alias's
    state merges into the contact there, its later records are the contact's, a repeat changes nothing."""
    from scoring.identity import contact_merge, identity_link
    from tools.backtest import ALIAS, EVENT, Source, run_backtest

    t = END_MS - 10 * 86_400_000
    ev = lambda cid, eid, et, at, anon=None: (cid, EVENT, BehaviourEvent(eid, cid, et, at, {}, "t", anon))  # noqa: E731
    link = identity_link({"link_id": "l1", "anonymous_id": "b", "contact_id": "win", "linked_at": t + 2}, END_MS, 0)
    merge = contact_merge({"merge_id": "m1", "winner": "win", "loser": "dup", "merged_at": t + 4}, END_MS, 0)
    chunk = [ev("anon:b", "a1", "pricing_page_view", t, "b"), ev("dup", "d1", "demo_request", t + 1),
             ("anon:b", ALIAS, link), ev("win", "w1", "webinar_signup", t + 3), ("dup", ALIAS, merge),
             ev("dup", "d2", "content_download", t + 5), ev("anon:b", "a2", "case_study_view", t + 6, "b"),
             ("dup", ALIAS, merge)]
    res = run_backtest([("A", default_rules())], Source("test"), iter([chunk]), by_time=False, end=END_MS)
    rp = res["_replays"][0]
    assert set(rp.states) == {"win"} and res["rules"][0]["merged"] == 2
    assert res["input"]["identity links repeated"] == 1
    model = ScoringModel(default_rules())
    union, _ = model.apply_events(None, [BehaviourEvent(e.event_id, "win", e.event_type, e.occurred_at)
                                         for _, kind, e in chunk if kind == EVENT])
    assert rp.final["win"][2] == pytest.approx(model.snapshot(union, END_MS).score)
