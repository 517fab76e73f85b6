"""Business and offline commands: orders, approvals, decisions, the audit log, keys, tokens."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from approvals_ctl.client import (
    EXIT_BROKEN,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    Client,
    CtlError,
    _show,
    _table,
)
from contracts.signing import UnusableKey, new_key_pair
from plumbing.auth import AuthConfigError, TokenTable, new_token_entry


def cmd_place(c: Client, a: argparse.Namespace) -> int:
    body = {
        "order_id": a.order_id,
        "customer_id": a.customer,
        "amount": a.amount,
        "currency": a.currency,
    }
    out = c.call("POST", "/orders", app="orders", json=body)
    # The server's amount_text: the amount as accepted, so the CLI never formats money itself.
    _show(
        a,
        out,
        f"order {out['order_id']} placed: {out['amount_text']}; workflow {out['instance_id']}",
    )
    return EXIT_OK


def _fields(data: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """One line per field that has a value, for people."""
    return "\n".join(
        f"{k:>14}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
        for k, v in data.items()
        if v not in (None, "", [], {}) and k not in skip
    )


def cmd_order_get(c: Client, a: argparse.Namespace) -> int:
    params: dict[str, Any] = {"wait": a.wait}
    if a.until:
        params["until"] = a.until
    out = c.call("GET", f"/orders/{a.order_id}", app="orders", params=params)
    _show(a, out, _fields(out, skip=("workflow",)))
    if a.until and not out.get("reached"):
        how = "ended" if out.get("ended") else "is"
        still = "" if out.get("ended") else " yet"
        print(
            f"error: order {a.order_id} {how} {out['status']}, not {a.until}{still}",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK


def cmd_cancel(c: Client, a: argparse.Namespace) -> int:
    body = {"reason": a.reason}
    out = c.call("POST", f"/orders/{a.order_id}/cancel", app="orders", json=body)
    if a.wait <= 0:
        _show(a, out, f"order {a.order_id}: cancellation requested; {out['detail']}")
        return EXIT_OK
    print(
        f"order {a.order_id}: cancellation requested; waiting up to {a.wait:g}s for it to end",
        file=sys.stderr,
    )
    params = {"wait": a.wait, "until": "cancelled"}
    order = c.call("GET", f"/orders/{a.order_id}", app="orders", params=params)
    _show(a, order, f"order {a.order_id}: {order['status']}: {order['detail']}")
    if order["status"] != "cancelled":
        how = "ended" if order.get("ended") else "is still"
        print(f"error: order {a.order_id} {how} {order['status']}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_approval_get(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/approvals/{a.order_id}", app="approvals", params={"wait": a.wait})
    log = _table(out.get("log", []), ["at", "kind", "stage", "tier", "approver_id", "note"])
    _show(a, out, _fields(out, skip=("log",)) + "\n" + log)
    return EXIT_OK


def cmd_decide(c: Client, a: argparse.Namespace) -> int:
    body = {"approved": a.approve, "reason": a.reason}
    out = c.call("POST", f"/approvals/{a.order_id}/decisions", app="approvals", json=body)
    _show(a, out, f"decision {out['decision_id']} on {a.order_id} submitted")
    return EXIT_OK


def cmd_tokens_new(c: Client, a: argparse.Namespace) -> int:
    spec = f"{a.principal}:{a.roles}" + (f":{a.level}" if a.level else "")
    token, key = new_token_entry()
    try:
        TokenTable.parse({key: spec})
    except AuthConfigError as exc:
        raise CtlError(str(exc).replace("api token entry 1", "the entry"), EXIT_USAGE) from None
    print(json.dumps({"token": token, "api-tokens entry": {key: spec}}, indent=2))
    print(
        "Give the token to its holder once; put only the entry (a digest) in the api-tokens "
        "secret.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_keys_new(c: Client, a: argparse.Namespace) -> int:
    try:
        signing, public = new_key_pair(a.key_id)
    except UnusableKey as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    print(json.dumps({"signing-key": signing, f"{a.signer}-verify-keys": public}, indent=2))
    return EXIT_OK


def cmd_audit_list(c: Client, a: argparse.Namespace) -> int:
    wanted = {
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "outcome": a.outcome,
        "limit": a.limit,
        "before_seq": a.before,
        "after_seq": a.after,
    }
    resp = c.send("GET", "/audit", params={k: v for k, v in wanted.items() if v is not None})
    out = resp.json()
    _show(a, out, _table(out, ["seq", "at", "actor", "action", "target", "outcome"]))
    if not a.json:  # the Link header says where the next pages start
        for rel, way, flag, param in (
            ("prev", "older", "--before", "before_seq"),
            ("next", "newer", "--after", "after_seq"),
        ):
            if rel in resp.links:
                seq = httpx.URL(resp.links[rel]["url"]).params.get(param)
                print(f"  more {way}: {flag} {seq}", file=sys.stderr)
    return EXIT_OK


def _anchors(path: str | None) -> dict[str, Any]:
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            kept = json.load(f)
    except (OSError, ValueError) as exc:
        raise CtlError(f"cannot read the anchor file {path}: {exc}", EXIT_USAGE) from None
    return kept if isinstance(kept, dict) else {}


def cmd_audit_verify(c: Client, a: argparse.Namespace) -> int:
    anchors = _anchors(a.anchor)
    params: dict[str, Any] = {"full": a.full}
    kept = anchors.get(c.base())
    if isinstance(kept, dict) and {"count", "head"} <= kept.keys():
        params |= {"anchor_count": kept["count"], "anchor_head": kept["head"]}
    out = c.call("GET", "/audit/verify", params=params)
    out["app"] = a.app
    if a.anchor and out["intact"] and out.get("anchor") and out["anchor"]["count"]:
        anchors[c.base()] = out["anchor"]
        try:
            with open(a.anchor, "w") as f:
                json.dump(anchors, f, indent=2)
        except OSError as exc:
            raise CtlError(f"cannot write the anchor file {a.anchor}: {exc}", EXIT_FAIL) from None
    human = f"{a.app}: {out['summary']}"
    if len(out["problems"]) > 1:
        human += "".join(f"\n  {p}" for p in out["problems"])
    _show(a, out, human)
    return EXIT_OK if out["intact"] else EXIT_BROKEN
