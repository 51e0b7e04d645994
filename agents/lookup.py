"""GET /contacts/{id}: score, temperature, stage, fit, grade and explanation of one contact; for an id
merged into another (an identified visitor, a de-duplicated contact), a 301 to that contact.
GET /accounts/{id}: an account and its contributing contacts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from faust.web import Request, Response, View

from agents.pipeline import snapshot_record
from scoring.accounts import account_key
from scoring.identity import alias_target

if TYPE_CHECKING:
    from streams.bootstrap import Runtime


def register(rt: "Runtime") -> None:
    app = rt.app

    @app.page("/contacts/{contact_id}")
    class ContactView(View):
        """Answered by the worker that owns the contact's partition: Faust routes a request that
        reaches another worker there, with the same murmur2 partitioning the router uses."""

        @app.table_route(table=rt.contacts, match_info="contact_id")
        async def get(self, request: Request, contact_id: str) -> Response:
            # Through the write-behind buffer: a state whose lifecycle changes are already published
            # may not have reached the store yet, and a lookup must not show the contact behind them.
            key = contact_id.encode()
            rt.store.focus(rt.router.owner(contact_id))
            raw_state = rt.states.get(key) if not contact_id.startswith("\0") else None
            if raw_state is None:
                return self.json({"error": f"unknown contact {contact_id!r}"}, status=404)
            target = alias_target(raw_state)
            if target is not None:  # merged (identified, or de-duplicated): its activity is the target's
                return self.json({"contact_id": contact_id, "merged_into": target}, status=301,
                                 headers={"Location": f"/contacts/{quote(target, safe='')}"})
            model = rt.model
            return self.json(snapshot_record(model.snapshot(model.decode_state(raw_state))))

    @app.page("/accounts/{account_id}")
    class AccountView(View):
        """An account at `?at=` (epoch ms; default now, never before the account's clock): engagement,
        fit, temperature, stage, buying-group coverage and every contributing contact. Routed to the
        owner of the account's partition, like contacts."""

        @app.table_route(table=rt.contacts, match_info="account_id")
        async def get(self, request: Request, account_id: str) -> Response:
            at_arg = request.query.get("at")
            try:
                at = int(at_arg) if at_arg is not None else int(time.time() * 1000)
            except ValueError:
                return self.json({"error": f"at: expected epoch milliseconds, got {at_arg!r}"}, status=400)
            rt.store.focus(rt.router.owner(account_id))
            raw = rt.states.get(account_key(account_id).encode())
            if raw is None:
                return self.json({"error": f"unknown account {account_id!r}"}, status=404)
            accounts = rt.pipeline.accounts
            return self.json(accounts.snapshot(accounts.decode(raw, account_id), at))
