"""`leadpulse simulate`: determinism, realism, noise rates, the container format."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import fastavro
import pytest

from agents.pipeline import EVENTS, to_domain
from scoring import (ContactProfile, QualificationUpdate, validate_event, validate_profile,
                     validate_qualification)
from tests.tools.conftest import END, END_MS, one_error_line

DAY = 86_400_000


def read(path):
    with open(path, "rb") as fh:
        r = fastavro.reader(fh)
        return r.writer_schema, r.metadata, list(r)


def test_same_seed_gives_byte_identical_files(cli, tmp_path):
    args = ["simulate", "--contacts", "300", "--seed", "42", "--end", END]
    assert cli(*args, "--out", tmp_path / "a.avro")[0] == 0
    assert cli(*args, "--out", tmp_path / "b.avro")[0] == 0
    assert cli("simulate", "--contacts", "300", "--seed", "43", "--end", END, "--out", tmp_path / "c.avro")[0] == 0
    a, b, c = ((tmp_path / f"{x}.avro").read_bytes() for x in "abc")
    assert a == b
    assert a != c


def test_default_end_is_the_current_hour_so_same_seed_is_still_identical(cli, tmp_path):
    before = int(time.time() * 1000)
    for name in ("a", "b"):
        assert cli("simulate", "--contacts", "50", "--seed", "1", "--out", tmp_path / f"{name}.avro")[0] == 0
    if int(time.time() * 1000) // 3_600_000 == before // 3_600_000:  # not across an hour boundary
        assert (tmp_path / "a.avro").read_bytes() == (tmp_path / "b.avro").read_bytes()
    _, meta, recs = read(tmp_path / "a.avro")
    end = int(meta["leadpulse.end"])
    assert end % 3_600_000 == 0 and before - 3_600_000 < end <= before
    # every event lies in the past: the worker's "more than a day in the future" check never fires
    for r in recs:
        rec = r[r["kind"]]
        assert rec.get("occurred_at", rec.get("updated_at")) <= end


def key_of(e: dict) -> str:
    """Whose event it is: the contact's, or its anonymous visitor's before the form."""
    return e["contact_id"] or f"anon:{e['anonymous_id']}"


def test_records_are_valid_inputs_of_the_core(funnel):
    schema, meta, recs = read(funnel)
    assert schema["name"] == "io.leadpulse.sim.SimulatedRecord"
    assert meta["leadpulse.format"] == "leadpulse-simulation/1"
    now = END_MS
    kinds = Counter()
    for r in recs:
        kind = r["kind"]
        kinds[kind] += 1
        assert [k for k in ("behaviour", "profile", "qualification") if r[k] is not None] == [kind]
        rec = r[kind]
        if kind == "behaviour":
            # As the worker reads it: an event with no contact id is its anonymous visitor's (anon:<id>).
            event = to_domain(EVENTS, rec)
            validate_event(event, now, max_future_ms=0)
            kinds["anonymous"] += event.contact_id.startswith("anon:") and not rec["contact_id"]
            assert END_MS - 60 * DAY <= rec["occurred_at"] <= END_MS
        elif kind == "profile":
            validate_profile(ContactProfile(**rec), now, max_future_ms=0)
        else:
            validate_qualification(QualificationUpdate(**rec), now, max_future_ms=0)
    assert kinds["behaviour"] > 10 * kinds["profile"] > 0
    assert kinds["qualification"] > 0 and kinds["anonymous"] > 0


def test_personas_have_the_fit_profiles_of_a_b2b_funnel(funnel):
    from scoring import default_rules, score_fit

    rules = default_rules()
    _, _, recs = read(funnel)
    profiles = {}
    for r in recs:
        if r["kind"] == "profile":
            profiles[r["profile"]["contact_id"]] = r["profile"]  # latest wins (file order = time order)
    grades = Counter(score_fit(ContactProfile(**p), rules).grade for p in profiles.values())
    assert grades["A"] > 0 and grades["B"] > 0 and grades["D"] > 0  # decision makers ... students
    domains = Counter(p["email"].rsplit("@", 1)[1] for p in profiles.values())
    assert any(d in domains for d in ("rivalscore.example", "leadhawk.example"))  # competitors
    assert sum(n for d, n in domains.items() if d in ("gmail.com", "yahoo.fr", "hotmail.com", "outlook.com")) > 20
    titles = Counter(p["job_title"] for p in profiles.values())
    assert titles["Student"] + titles["Marketing Intern"] + titles["Étudiant"] > 0


def test_journeys_walk_the_funnel_and_sales_works_mqls(funnel):
    _, _, recs = read(funnel)
    types = Counter(r["behaviour"]["event_type"] for r in recs if r["kind"] == "behaviour")
    for t in ("page_view", "newsletter_signup", "content_download",  # TOFU
              "webinar_signup", "webinar_attended", "case_study_view", "email_click",  # MOFU
              "pricing_page_view", "demo_request", "free_trial_signup"):  # BOFU
        assert types[t] > 0, t
    assert types["page_view"] > types["demo_request"] * 5
    actions = Counter(r["qualification"]["action"] for r in recs if r["kind"] == "qualification")
    for a in ("criteria", "accept", "reject", "disqualify", "won"):
        assert actions[a] > 0, actions
    frameworks = {r["qualification"]["framework"] for r in recs if r["kind"] == "qualification"}
    assert {"BANT", "MEDDICC"} <= frameworks


def test_noise_rates_are_roughly_respected(cli, tmp_path):
    out = tmp_path / "noisy.avro"
    rc, stdout, _ = cli("simulate", "--contacts", "2500", "--seed", "5", "--end", END, "--bots", "0.1",
                        "--duplicates", "0.05", "--out-of-order", "0.08", "--out", out, "--json")
    assert rc == 0
    stats = json.loads(stdout)
    _, _, recs = read(out)
    has_profile, has_events = set(), set()
    seen, first_deliveries, dups, late = set(), 0, 0, 0
    latest: dict[str, int] = defaultdict(int)
    for r in recs:
        if r["kind"] == "profile":
            has_profile.add(r["profile"]["contact_id"])
        elif r["kind"] == "behaviour":
            e = r["behaviour"]
            who = key_of(e)
            has_events.add(who)
            if e["event_id"] in seen:
                dups += 1
                continue
            seen.add(e["event_id"])
            first_deliveries += 1
            if e["occurred_at"] < latest[who]:
                late += 1  # delivered after an event of the same contact that happened later
            latest[who] = max(latest[who], e["occurred_at"])
    # bots: behaviour, never a profile (visitors who never identified are anonymous, not bots)
    bots = {c for c in has_events - has_profile if not c.startswith("anon:")}
    assert 0.07 < len(bots) / len(has_events) < 0.13
    assert 0.04 < dups / first_deliveries < 0.06
    assert 0.06 < late / first_deliveries < 0.10
    assert stats["duplicates"] == dups and stats["bots"] == len(bots)
    assert stats["behaviour_events"] == first_deliveries
    assert stats["contacts"] == 2500
    # bots look like bots: many page views, nothing else
    per_bot = Counter(r["behaviour"]["contact_id"] for r in recs
                      if r["kind"] == "behaviour" and r["behaviour"]["contact_id"] in bots)
    assert sum(per_bot.values()) / len(per_bot) > 40


def test_zero_noise_means_none(cli, tmp_path):
    out = tmp_path / "clean.avro"
    assert cli("simulate", "--contacts", "300", "--end", END, "--bots", "0", "--duplicates", "0",
               "--out-of-order", "0", "--out", out)[0] == 0
    _, _, recs = read(out)
    ids = [r["behaviour"]["event_id"] for r in recs if r["kind"] == "behaviour"]
    assert len(ids) == len(set(ids))
    latest: dict[str, int] = {}
    for r in recs:
        if r["kind"] == "behaviour":
            e = r["behaviour"]
            assert e["occurred_at"] >= latest.get(key_of(e), 0)
            latest[key_of(e)] = e["occurred_at"]
    with_profile = {r["profile"]["contact_id"] for r in recs if r["kind"] == "profile"}
    known = {c for c in latest if not c.startswith("anon:")}
    assert known <= with_profile and len(known) < len(latest)  # some visitors never identified



def test_events_target(cli, tmp_path):
    rc, stdout, _ = cli("simulate", "--events", "20000", "--end", END, "--out", tmp_path / "n.avro", "--json")
    assert rc == 0
    stats = json.loads(stdout)
    assert 20_000 <= stats["behaviour_events"] < 21_000


def test_summary_is_human_by_default(cli, tmp_path):
    rc, out, err = cli("simulate", "--contacts", "100", "--end", END, "--out", tmp_path / "h.avro")
    assert rc == 0 and err == ""
    assert "simulated 100 contacts" in out and "h.avro" in out and "events/s" in out


def test_reference_avro_implementation_reads_the_file(cli, tmp_path):
    """avro-python3 (the Apache reference implementation) agrees with fastavro on our container."""
    from avro.datafile import DataFileReader
    from avro.io import DatumReader

    out = tmp_path / "ref.avro"
    assert cli("simulate", "--contacts", "30", "--end", END, "--out", out, "--codec", "deflate")[0] == 0
    _, _, recs = read(out)
    with open(out, "rb") as fh:
        ref = list(DataFileReader(fh, DatumReader()))
    assert ref == recs


@pytest.mark.parametrize("args, message", [
    (["--bots", "1.5"], "--bots must be a fraction"),
    (["--duplicates", "-0.1"], "--duplicates must be a fraction"),
    (["--days", "0"], "--days"),
    (["--end", "yesterday"], "--end 'yesterday'"),
    (["--rules", "/nonexistent/rules.toml"], "rules file /nonexistent/rules.toml: no such file"),
    (["--out", "/nonexistent/dir/x.avro"], "directory /nonexistent/dir does not exist"),
])
def test_bad_options_are_one_line(cli, args, message):
    rc, out, err = cli("simulate", "--contacts", "10", *args)
    assert rc == 2
    assert message in one_error_line(err)


def test_unreachable_broker_is_one_line_exit_2(cli):
    from tools.runtime import free_port

    rc, out, err = cli("simulate", "--contacts", "10", "--bootstrap", f"127.0.0.1:{free_port()}")
    assert rc == 2
    assert "cannot reach Kafka at 127.0.0.1:" in one_error_line(err)
