"""`make demo`: a local broker, one worker, a few contacts walking the funnel, lifecycle changes printed
as the CRM would receive them. Stops everything it started when done or on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from streams.codec import AvroCodec
from streams.localkafka import LocalKafka, LocalKafkaError
from tools.runtime import ROOT, Worker, consume, produce, topic_env

codec = AvroCodec()
HOUR = 3_600_000

# (contact, profile, journey of (hours ago, event type, properties))
CONTACTS = [
    ("alice", dict(email="alice@acme-robotics.com", job_title="VP Marketing", company="Acme Robotics",
                   company_size=800, industry="software", country="FR"),
     [(30, "content_download", {"asset_type": "whitepaper"}), (26, "webinar_signup", {}),
      (24, "webinar_attended", {}), (6, "pricing_page_view", {"url": "/pricing"}),
      (5, "pricing_page_view", {"url": "/pricing"}), (4, "demo_request", {})]),
    ("bruno", dict(email="bruno@globex.io", job_title="Data engineer", company="Globex",
                   company_size=120, industry="software", country="DE"),
     [(20, "content_download", {"asset_type": "whitepaper"}), (10, "webinar_signup", {}),
      (8, "webinar_attended", {}), (3, "email_click", {})]),
    ("chloe", dict(email="chloe.student@gmail.com", job_title="Student", company=None,
                   company_size=None, industry="education", country="BE"),
     [(12, "page_view", {"url": "/blog/lead-scoring"}), (11, "newsletter_signup", {})]),
    # Two more people at Acme Robotics: with alice, the account's buying group has three roles.
    ("ernest", dict(email="ernest@acme-robotics.com", job_title="Solutions Architect", company="Acme Robotics",
                    company_size=800, industry="software", country="FR"),
     [(9, "webinar_attended", {}), (8, "content_download", {"asset_type": "whitepaper"}),
      (7, "pricing_page_view", {"url": "/pricing"})]),
    ("fanny", dict(email="fanny@acme-robotics.com", job_title="Marketing Manager", company="Acme Robotics",
                   company_size=800, industry="software", country="FR"),
     [(3, "webinar_attended", {}), (2, "case_study_view", {}), (2, "pricing_page_view", {"url": "/pricing"})]),
]
#: An anonymous visitor: pricing and case-study pages under a browser id only, then a form that carries
#: both ids (the CRM learns who it was): the visitor's history is the contact's at once.
VISITOR = ("dana", dict(email="dana@initech-labs.com", job_title="Head of Growth", company="Initech Labs",
                        company_size=300, industry="software", country="FR"),
           [(10, "pricing_page_view", {"url": "/pricing"}), (9, "case_study_view", {}),
            (8, "pricing_page_view", {"url": "/pricing/enterprise"}), (7, "webinar_attended", {})],
           (1, "form_submit", {"form": "contact-sales"}))


def records(run: str, now: int):
    profiles, events = [], []
    for name, profile, journey in CONTACTS:
        cid = f"{name}-{run}"
        profiles.append((cid.encode(), codec.encode("ContactProfile", dict(
            contact_id=cid, updated_at=now - 48 * HOUR, **profile))))
        for i, (hours_ago, etype, props) in enumerate(journey):
            events.append((cid.encode(), codec.encode("BehaviourEvent", dict(
                event_id=f"{cid}-{i}", contact_id=cid, anonymous_id=None, event_type=etype,
                occurred_at=now - hours_ago * HOUR, source="demo", properties=props))))
    name, profile, browsing, (hours_ago, etype, props) = VISITOR
    cid, browser = f"{name}-{run}", f"browser-{run}"
    profiles.append((cid.encode(), codec.encode("ContactProfile", dict(
        contact_id=cid, updated_at=now - hours_ago * HOUR, **profile))))
    for i, (ago, et, pr) in enumerate(browsing):
        events.append((f"anon:{browser}".encode(), codec.encode("BehaviourEvent", dict(
            event_id=f"{browser}-{i}", contact_id="", anonymous_id=browser, event_type=et,
            occurred_at=now - ago * HOUR, source="demo", properties=pr))))
    events.append((cid.encode(), codec.encode("BehaviourEvent", dict(
        event_id=f"{cid}-form", contact_id=cid, anonymous_id=browser, event_type=etype,
        occurred_at=now - hours_ago * HOUR, source="demo", properties=props))))
    return profiles, events


def show(m) -> str:
    c = codec.decode("LifecycleChange", m.value)
    top = sorted(c["explanation"].items(), key=lambda kv: -abs(kv[1]))[:3]
    why = ", ".join(f"{k} {v:+.1f}" for k, v in top)
    merged = " — at the form: its anonymous history merged" if (c["cause_event_id"] or "").startswith("merge:") else ""
    return (f"  {c['contact_id']:<22} {c['kind']:<11} {str(c['from_value']):>8} → {c['to_value']:<9}"
            f" score {c['score']:6.1f} (fit {c['grade']})  because {why}{merged}")


def show_account(m) -> str:
    a = codec.decode("AccountChange", m.value)
    return (f"  {a['account_id']:<30} {a['kind']:<12} {str(a['from_value'] or '-'):>8} → {a['to_value']:<12}"
            f" engagement {a['engagement']:6.1f}, {a['engaged_contacts']} engaged (caused by {a['cause_contact_id']})")


async def run(args) -> int:
    state = ROOT / ".leadpulse" / "demo"
    broker = LocalKafka(state_dir=state / "kafka")
    worker = None
    try:
        print("starting the local Kafka broker (the first run downloads it from Maven Central)…", flush=True)
        bootstrap = broker.start()
        print(f"broker at {bootstrap}")
        run_id = uuid.uuid4().hex[:6]
        names = topic_env(f"demo-{run_id}")
        os.environ.update(names)  # the producer below and the worker agree on topic names
        # One worker, so the transactional mode is safe here (see LEADPULSE_PROCESSING_GUARANTEE in README).
        worker = Worker(bootstrap, f"demo-{run_id}", state, name=f"demo-{run_id}",
                        extra_env={"LEADPULSE_PROCESSING_GUARANTEE": "exactly_once"})
        worker.start()
        print(f"worker starting (log: {worker.log_path})…", flush=True)
        worker.wait_ready(timeout=90)
        print(f"worker ready; lookup API at {worker.url}/contacts/<id>\n")
        now = int(time.time() * 1000)
        profiles, events = records(run_id, now)
        await produce(bootstrap, names["LEADPULSE_PROFILES_TOPIC"], profiles)
        await asyncio.sleep(args.profile_head_start)
        await produce(bootstrap, names["LEADPULSE_EVENTS_TOPIC"], events)
        print(f"sent {len(profiles)} profiles and {len(events)} behaviour events; lifecycle changes:")
        seen: list = []
        qualified = False
        quiet_since = [time.monotonic()]

        async def handoff(contact_id: str) -> None:
            """Sales qualifies the MQL with BANT: the contact becomes an SQL (a prospect)."""
            update = codec.encode("QualificationUpdate", dict(
                update_id=f"bant-{contact_id}", contact_id=contact_id, action="criteria", framework="BANT",
                criteria={"budget": True, "authority": True, "need": True, "timeline": True},
                occurred_at=int(time.time() * 1000), reason="discovery call"))
            await produce(bootstrap, names["LEADPULSE_QUALIFICATIONS_TOPIC"], [(contact_id.encode(), update)])
            print(f"  … sales completed BANT for {contact_id}", flush=True)

        pending: list = []

        def done(got) -> bool:
            nonlocal qualified
            while len(seen) < len(got):
                seen.append(got[len(seen)])
                quiet_since[0] = time.monotonic()
                print(show(seen[-1]), flush=True)
                change = codec.decode("LifecycleChange", seen[-1].value)
                if change["to_value"] == "mql" and not qualified:
                    qualified = True
                    pending.append(asyncio.ensure_future(handoff(change["contact_id"])))
            return bool(seen) and time.monotonic() - quiet_since[0] > args.quiet
        await consume(bootstrap, names["LEADPULSE_LIFECYCLE_TOPIC"], done, timeout=args.timeout)
        await asyncio.gather(*pending)
        if not seen:
            print("no lifecycle change arrived: see the worker log", worker.log_path, file=sys.stderr)
            return 1
        print(f"\nlook a contact up (a bearer token of the lookup API, see README): "
              f"curl -H 'Authorization: Bearer $TOKEN' {worker.url}/contacts/alice-{run_id}")
        status, body = worker.get_json(f"/contacts/alice-{run_id}")
        if status == 200:
            print(f"  alice-{run_id}: score {body['score']:.1f}, {body['temperature']}, stage {body['stage']}, fit {body['grade']}")
        status, body = worker.get_json(f"/contacts/anon:browser-{run_id}")  # a 301 to the contact, followed
        if status == 200:
            print(f"  anon:browser-{run_id} (the visitor before the form) is now {body['contact_id']}: "
                  f"score {body['score']:.1f}, {body['temperature']}")
        account = "domain:acme-robotics.com"
        print(f"\naccount changes ({names['LEADPULSE_ACCOUNTS_TOPIC']}):")
        got = await consume(bootstrap, names["LEADPULSE_ACCOUNTS_TOPIC"],
                            lambda got: any(codec.decode("AccountChange", m.value)["to_value"] == "mqa" for m in got),
                            timeout=15)
        for m in got:
            print(show_account(m))
        status, body = worker.get_json(f"/accounts/{account}")
        if status == 200:
            print(f"  GET /accounts/{account}: {body['stage']}, {body['temperature']}, engagement "
                  f"{body['engagement']:.1f} from " + ", ".join(f"{m['contact_id']} ({m['role']})" for m in body["contacts"]))
        return 0
    except LocalKafkaError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    finally:
        if worker:
            worker.stop()
        broker.stop()
        print("\nstopped the worker and the broker.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for lifecycle changes")
    p.add_argument("--quiet", type=float, default=4.0, help="stop after this many seconds without a change")
    p.add_argument("--profile-head-start", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
