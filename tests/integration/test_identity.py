"""Identity on a real broker, two workers, producers partitioning as they like: an anonymous
visitor's pricing visits and then a form fill make the contact hot at once (cause merge:…), the
visitor's later activity counts for the contact, a lookup of the visitor points at the contact, and a
CRM merge leaves one state. Expectations come from the pure core offline."""

from __future__ import annotations

import asyncio
import time

import pytest

from scoring import BehaviourEvent, ContactProfile, ScoringModel, default_rules
from scoring.identity import alias_target
from tests.integration.test_routing import latest_by_key, now_ms, produce_with_librdkafka, profile
from tests.support import Worker, codec, consume, decoder, produce, start_workers, topic_env

pytestmark = pytest.mark.kafka
HOUR = 3_600_000
PARTITIONS = 4
MODEL = ScoringModel(default_rules())


def event(cid: str, eid: str, et: str, at: int, anon: str | None = None, **props) -> dict:
    return {"event_id": eid, "contact_id": cid, "anonymous_id": anon, "event_type": et, "occurred_at": at,
            "source": "web", "properties": props}


def encoded(rec: dict) -> tuple[bytes | None, bytes]:
    key = rec["contact_id"] or f"anon:{rec['anonymous_id']}"
    return key.encode(), codec.encode("BehaviourEvent", rec)


@pytest.fixture
def pair(kafka_bootstrap, unique, tmp_path):
    """Topic names and two workers over LEADPULSE_PARTITIONS partitions, in a stable group."""
    w1, w2 = start_workers(kafka_bootstrap, unique, tmp_path, ("w1", "w2"), {"LEADPULSE_PARTITIONS": str(PARTITIONS)})
    yield topic_env(unique), w1, w2
    w1.stop()
    w2.stop()


async def wait_json(worker: Worker, path: str, ok, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    status, body = 0, {}
    while time.monotonic() < deadline:
        status, body = worker.get_json(path)
        if ok(status, body):
            return status, body
        await asyncio.sleep(0.3)
    return status, body


async def test_identity_links_and_contact_merges_across_two_workers(kafka_bootstrap, unique, pair):
    names, w1, w2 = pair
    t0 = now_ms() - 10 * HOUR
    events_topic = names["LEADPULSE_EVENTS_TOPIC"]
    # 1. Anonymous pricing visits (no contact id: the tracker only knows the browser), through librdkafka.
    visits = [event("", f"{unique}-v{i}", "pricing_page_view", t0 + i * HOUR, anon="browser-7", url="/pricing")
              for i in range(3)]
    visits.append(event("", f"{unique}-v-demo", "demo_request", t0 + 3 * HOUR, anon="browser-7"))
    await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, events_topic, [encoded(v) for v in visits])
    status, anon = await wait_json(w1, "/contacts/anon:browser-7", lambda s, b: s == 200 and b["temperature"] == "hot")
    assert status == 200 and anon["temperature"] == "hot", (status, anon, w1.log_text()[-3000:])

    # 2. The form fill: a profile, and an IdentityLink (keyed by the contact, as the collector writes it).
    await produce(kafka_bootstrap, names["LEADPULSE_PROFILES_TOPIC"], [profile("ana", t0 + 4 * HOUR)])
    await produce(kafka_bootstrap, names["LEADPULSE_IDENTITY_TOPIC"], [(b"ana", codec.encode("IdentityLink", {
        "link_id": f"{unique}-link", "anonymous_id": "browser-7", "contact_id": "ana",
        "linked_at": t0 + 4 * HOUR, "source": "web"}))])

    def ana_hot(got):
        return any(c["contact_id"] == "ana" and c["to_value"] == "hot" for c in got)

    changes = await consume(kafka_bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], ana_hot, timeout=45,
                            decode=decoder("LifecycleChange"))
    hot = [c for c in changes if c["contact_id"] == "ana" and c["to_value"] == "hot"]
    assert hot and hot[0]["cause_event_id"] == f"merge:{unique}-link", (changes, w1.log_text()[-3000:])
    assert hot[0]["at"] == t0 + 4 * HOUR

    # 3. Later activity of the same browser counts for ana; the visitor's lookup points at ana. A second
    # browser (her phone) is linked by a form fill that carries both ids, with no IdentityLink at all.
    late = event("", f"{unique}-v-late", "webinar_signup", t0 + 5 * HOUR, anon="browser-7")
    phone = event("", f"{unique}-p1", "case_study_view", t0 + 5 * HOUR + 1, anon="phone-3")
    await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, events_topic,
                            [(None, encoded(late)[1]), encoded(phone)])
    await wait_json(w1, "/contacts/anon:phone-3", lambda s, b: s == 200)
    form = event("ana", f"{unique}-form", "form_submit", t0 + 5 * HOUR + 2, anon="phone-3", form="newsletter")
    await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, events_topic, [encoded(form)])
    want, _ = MODEL.apply_profile(None, ContactProfile(**codec.decode("ContactProfile",
                                                                      profile("ana", t0 + 4 * HOUR)[1])))
    want, _ = MODEL.apply_events(want, [BehaviourEvent(**{**v, "contact_id": "ana"})
                                        for v in visits + [late, phone, form]])
    score = MODEL.snapshot(want).score
    status, body = await wait_json(w2, "/contacts/ana", lambda s, b: s == 200 and abs(b["score"] - score) < 1e-6)
    assert status == 200 and abs(body["score"] - score) < 1e-6, (body, score)
    for alias in ("anon:browser-7", "anon:phone-3"):
        status, via_alias = w1.get_json(f"/contacts/{alias}")  # urllib follows the 301, as browsers do
        assert status == 200 and via_alias["contact_id"] == "ana", (alias, status, via_alias)

    # 4. A CRM merge: dup's activity folds into ana, one state remains, dup's score is tombstoned.
    await produce(kafka_bootstrap, events_topic, [encoded(event("dup", f"{unique}-d1", "free_trial_signup",
                                                                t0 + 5 * HOUR))])
    await wait_json(w1, "/contacts/dup", lambda s, b: s == 200)
    await produce(kafka_bootstrap, names["LEADPULSE_MERGES_TOPIC"], [(b"ana", codec.encode("ContactMerge", {
        "merge_id": f"{unique}-m", "winner": "ana", "loser": "dup", "merged_at": t0 + 6 * HOUR,
        "source": "hubspot"}))])
    dup_trial = BehaviourEvent(**event("ana", f"{unique}-d1", "free_trial_signup", t0 + 5 * HOUR))
    merged, _ = MODEL.merge(want, MODEL.apply_events(None, [dup_trial])[0], t0 + 6 * HOUR, "m", "ana")
    score = MODEL.snapshot(merged).score
    status, body = await wait_json(w2, "/contacts/ana", lambda s, b: s == 200 and abs(b["score"] - score) < 1e-6)
    assert abs(body["score"] - score) < 1e-6 and "free_trial_signup" in body["explanation"], body

    changelog = f"{names['LEADPULSE_APP_ID']}-contacts-changelog"
    deadline = time.monotonic() + 30
    while True:
        log = await latest_by_key(kafka_bootstrap, changelog)
        scores = await latest_by_key(kafka_bootstrap, names["LEADPULSE_SCORES_TOPIC"])
        settled = (alias_target(log[b"dup"][-1][1]) == "ana" and alias_target(log[b"anon:browser-7"][-1][1]) == "ana"
                   and scores[b"dup"][-1][1] is None and scores[b"anon:browser-7"][-1][1] is None)
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    assert settled, (log.get(b"dup"), scores.get(b"dup"))
    states = [k for k, v in log.items() if v[-1][1] is not None and alias_target(v[-1][1]) is None
              and not k.startswith(b"\0")]  # (the account's state is there too: acme-robotics.com)
    assert states == [b"ana"], states  # one contact state left, in ana's own partition


def account_profile(cid: str, title: str, at: int) -> tuple[bytes, bytes]:
    return cid.encode(), codec.encode("ContactProfile", dict(
        contact_id=cid, email=f"{cid}@globex-robotics.com", job_title=title, company="Globex", company_size=800,
        industry="software", country="FR", updated_at=at))


async def test_an_account_crosses_mqa_when_a_third_role_engages_across_two_workers(kafka_bootstrap, unique, pair):
    names, w1, w2 = pair
    t0 = now_ms() - 10 * HOUR
    people = {f"{unique}-cfo": "CFO", f"{unique}-arch": "Solutions Architect", f"{unique}-mgr": "Marketing Manager"}
    await produce(kafka_bootstrap, names["LEADPULSE_PROFILES_TOPIC"],
                  [account_profile(cid, title, t0) for cid, title in people.items()])
    busy = ["demo_request", "webinar_attended", "pricing_page_view"]

    def engagement(cid: str, at: int):
        return [encoded(event(cid, f"{cid}-{k}", k, at + i, url="/pricing")) for i, k in enumerate(busy)]

    first, second, third = people
    await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                            engagement(first, t0 + HOUR) + engagement(second, t0 + 2 * HOUR))
    account = "domain:globex-robotics.com"
    status, body = await wait_json(w1, f"/accounts/{account}", lambda s, b: s == 200 and b["engaged_contacts"] == 2)
    assert status == 200 and body["stage"] == "unqualified", (status, body, w1.log_text()[-3000:])
    assert set(body["roles"]) == {"economic-buyer", "technical-evaluator"} and body["missing_roles"] == [
        "champion", "user"]
    await asyncio.to_thread(produce_with_librdkafka, kafka_bootstrap, names["LEADPULSE_EVENTS_TOPIC"],
                            engagement(third, t0 + 3 * HOUR))

    def mqa(got):
        return any(c["kind"] == "stage" and c["to_value"] == "mqa" for c in got)

    changes = await consume(kafka_bootstrap, names["LEADPULSE_ACCOUNTS_TOPIC"], mqa, timeout=45,
                            decode=decoder("AccountChange"))
    stage = [c for c in changes if c["kind"] == "stage"]
    assert [(c["account_id"], c["from_value"], c["to_value"], c["cause_contact_id"]) for c in stage] == [
        (account, "unqualified", "mqa", third)], changes
    # The lookup (from the other worker too) lists the contributing contacts; engagement is their sum.
    status, body = await wait_json(w2, f"/accounts/{account}?at={t0 + 4 * HOUR}",
                                   lambda s, b: s == 200 and b["stage"] == "mqa")
    assert sorted(m["contact_id"] for m in body["contacts"]) == sorted(people)
    total = 0.0
    for cid in people:
        state, _ = MODEL.apply_profile(None, ContactProfile(**codec.decode("ContactProfile",
                                                                            account_profile(cid, people[cid], t0)[1])))
        state, _ = MODEL.apply_events(state, [BehaviourEvent(**codec.decode("BehaviourEvent", v))
                                              for _, v in engagement(cid, t0 + (1 + list(people).index(cid)) * HOUR)])
        total += MODEL.snapshot(state, t0 + 4 * HOUR).engagement
    assert abs(body["engagement"] - total) < 1e-6, (body["engagement"], total)
