"""``idp-verify``: enroll, listen for sign-in requests, approve or deny them by number,
show offline codes, list and remove accounts.

Exit status: 0 done, 1 refused or failed (the reason is printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import api, state, totp
from .state import Account


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(f"idp-verify: {text}", file=sys.stderr, flush=True)


def _state_path(args: argparse.Namespace) -> Path:
    return Path(args.state).expanduser() if args.state else state.default_path()


def _pick(accounts: list[Account], wanted: str | None) -> Account:
    if not accounts:
        raise api.AppError(0, "no_account", "no account yet: run `idp-verify enroll URI` first")
    if wanted is None:
        if len(accounts) == 1:
            return accounts[0]
        raise api.AppError(0, "ambiguous", "several accounts: choose one with --account")
    for i, a in enumerate(accounts, 1):
        if wanted in (str(i), a.device_id, a.account, a.label):
            return a
    raise api.AppError(
        0, "no_account", f"no account matches {wanted!r} (see `idp-verify accounts`)"
    )


def _describe(ch: dict[str, Any], account: Account) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ch.get("time", 0)))
    return (
        f"Sign-in request for {account.title}\n"
        f"  Application: {ch.get('client') or '?'}\n"
        f"  From: {ch.get('ip') or '?'} ({ch.get('browser') or 'unknown browser'})\n"
        f"  At: {when} (expires in {ch.get('expires_in', '?')} s)"
    )


def _one_challenge(client: api.Client, args: argparse.Namespace) -> dict[str, Any] | None:
    if args.challenge:
        return {"id": args.challenge}
    found = client.wait_for_challenge(args.wait) if args.wait > 0 else client.pending()
    return found[0] if found else None


# -- commands -------------------------------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    path = _state_path(args)
    accounts = state.load(path)
    name = args.name or socket.gethostname() or "Phone"
    account = api.enroll(args.uri, name=name[:40], alg=args.alg)
    accounts.append(account)
    state.save(path, accounts)
    _out(f"Registered this device as {account.label!r} for {account.title}.")
    _out("Finish the set-up in your browser.")
    return 0


def cmd_accounts(args: argparse.Namespace) -> int:
    accounts = state.load(_state_path(args))
    if args.json:
        _out(
            json.dumps(
                [
                    {
                        "n": i,
                        "account": a.account,
                        "issuer": a.issuer,
                        "label": a.label,
                        "device_id": a.device_id,
                        "alg": a.alg,
                    }
                    for i, a in enumerate(accounts, 1)
                ],
                indent=2,
            )
        )
        return 0
    if not accounts:
        _out("No accounts. Add one with `idp-verify enroll URI`.")
    for i, a in enumerate(accounts, 1):
        _out(f"{i}. {a.title} - device {a.label!r} ({a.alg}), {a.issuer}")
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    account = _pick(state.load(_state_path(args)), args.account)
    client = api.Client(account)
    found = client.wait_for_challenge(args.wait) if args.wait > 0 else client.pending()
    if args.json:
        _out(json.dumps(found, indent=2))
    elif not found:
        _out("No pending sign-in request.")
    for ch in [] if args.json else found:
        _out(_describe(ch, account))
        _out("  Choices: " + "  ".join(str(n) for n in ch.get("choices", [])))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    account = _pick(state.load(_state_path(args)), args.account)
    client = api.Client(account)
    ch = _one_challenge(client, args)
    if ch is None:
        _err("no pending sign-in request")
        return 1
    client.approve(ch["id"], args.number)
    _out("Approved.")
    return 0


def cmd_deny(args: argparse.Namespace) -> int:
    account = _pick(state.load(_state_path(args)), args.account)
    client = api.Client(account)
    ch = _one_challenge(client, args)
    if ch is None:
        _err("no pending sign-in request")
        return 1
    client.deny(ch["id"], report=args.report)
    _out("Denied and reported as suspicious." if args.report else "Denied.")
    return 0


def _ask(ch: dict[str, Any]) -> tuple[str, int | None]:
    choices = list(ch.get("choices", []))
    _out("Which number does the sign-in screen show?")
    _out("  " + "   ".join(f"[{i}] {n}" for i, n in enumerate(choices, 1)))
    _out("  [d] deny   [r] deny and report as suspicious")
    while True:
        print("Choice: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return "skip", None
        answer = line.strip().lower()
        if answer in ("d", "r"):
            return ("report" if answer == "r" else "deny"), None
        if answer.isdigit():
            n = int(answer)
            if 1 <= n <= len(choices):
                return "approve", int(choices[n - 1])
            if n in choices:
                return "approve", n
        _out("Type 1, 2 or 3 (or the number itself), d or r.")


def cmd_listen(args: argparse.Namespace) -> int:
    account = _pick(state.load(_state_path(args)), args.account)
    client = api.Client(account)
    _out(f"Listening for sign-in requests for {account.title} (Ctrl-C to stop).")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while deadline is None or time.monotonic() < deadline:
        total = 25.0 if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            found = client.wait_for_challenge(min(total, 25.0))
        except api.AppError as exc:
            if exc.status not in (0, 502, 503, 504):
                raise
            _err(f"{exc.description}; retrying in 5 s")
            time.sleep(5)
            continue
        for ch in found:
            _out(_describe(ch, account))
            action, number = _ask(ch)
            try:
                if action == "approve" and number is not None:
                    client.approve(ch["id"], number)
                    _out("Approved.")
                elif action in ("deny", "report"):
                    client.deny(ch["id"], report=action == "report")
                    _out("Denied." if action == "deny" else "Denied and reported.")
                else:
                    return 0
            except api.AppError as exc:
                _err(exc.description)
            if args.once:
                return 0
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    account = _pick(state.load(_state_path(args)), args.account)
    secret = account.totp.get("secret")
    if not secret:
        _err("this account has no offline codes")
        return 1
    period = int(account.totp.get("period", 30))
    code = totp.code(secret, digits=int(account.totp.get("digits", 6)), period=period)
    if args.plain:
        _out(code)
    else:
        _out(f"{account.title}: {code} (valid for {totp.seconds_left(period=period)} s)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    path = _state_path(args)
    accounts = state.load(path)
    account = _pick(accounts, args.account)
    if not args.local_only:
        api.Client(account).remove()
    accounts = [a for a in accounts if a.device_id != account.device_id]
    state.save(path, accounts)
    _out(f"Removed {account.title}" + (" from this device only." if args.local_only else "."))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="idp-verify",
        description="Companion authenticator app: approve sign-ins by number, offline codes.",
    )
    p.add_argument(
        "--state",
        help=f"accounts file (default: ${state.ENV_VAR} or ~/.config/idp-verify/accounts.json)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("enroll", help="register this device with an enrollment link")
    e.add_argument("uri", help="the idp-verify://enroll?... link shown by the provider")
    e.add_argument("--name", help="device name shown in your account (default: host name)")
    e.add_argument("--alg", choices=("ES256", "EdDSA"), default="ES256", help="device key type")
    e.set_defaults(func=cmd_enroll)

    a = sub.add_parser("accounts", help="list the accounts on this device")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_accounts)

    def account_opt(sp):
        sp.add_argument("--account", help="number, email, device name or id (see accounts)")

    pe = sub.add_parser("pending", help="show pending sign-in requests")
    account_opt(pe)
    pe.add_argument("--wait", type=int, default=0, help="wait up to N seconds for one")
    pe.add_argument("--json", action="store_true")
    pe.set_defaults(func=cmd_pending)

    li = sub.add_parser("listen", help="wait for sign-in requests and answer them")
    account_opt(li)
    li.add_argument("--once", action="store_true", help="stop after one request")
    li.add_argument("--timeout", type=int, default=0, help="stop after N seconds")
    li.set_defaults(func=cmd_listen)

    ap = sub.add_parser("approve", help="approve a request with the number shown on screen")
    ap.add_argument("number", type=int, help="the number the sign-in screen shows")
    account_opt(ap)
    ap.add_argument("--challenge", help="request id (default: the pending one)")
    ap.add_argument("--wait", type=int, default=30, help="wait up to N seconds for a request")
    ap.set_defaults(func=cmd_approve)

    de = sub.add_parser("deny", help="deny a request")
    de.add_argument("--report", action="store_true", help="report it as suspicious")
    account_opt(de)
    de.add_argument("--challenge", help="request id (default: the pending one)")
    de.add_argument("--wait", type=int, default=30, help="wait up to N seconds for a request")
    de.set_defaults(func=cmd_deny)

    co = sub.add_parser("codes", help="show the current 6-digit code (works offline)")
    account_opt(co)
    co.add_argument("--plain", action="store_true", help="print only the code")
    co.set_defaults(func=cmd_codes)

    rm = sub.add_parser("remove", help="remove this device from the account")
    account_opt(rm)
    rm.add_argument(
        "--local-only",
        action="store_true",
        help="forget the account here without telling the provider",
    )
    rm.set_defaults(func=cmd_remove)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (api.AppError, state.StateError) as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 1
