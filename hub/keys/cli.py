"""``trustplane-hub keys``: key policies and keys (the CLI twins of ``/v1/keys...``).

Commands::

    trustplane-hub keys create POLICY [--tags EXPR] [--max-age SECONDS]   a new policy (its
                                                      key is made on the first wrap)
    trustplane-hub keys list                          every policy and key, one line each
    trustplane-hub keys show POLICY|KEY_ID            JSON (never key material)
    trustplane-hub keys policy set POLICY [--tags EXPR] [--max-age SECONDS]
    trustplane-hub keys rotate POLICY                 a new key version (printed)
    trustplane-hub keys retire KEY_ID                 the key neither wraps nor unwraps again

The logic is :mod:`hub.keys.api`'s (audited, as the API's); rotation seals the new key under the
master key (state directory or ``$CREDENTIALS_DIRECTORY``). Exit codes are :mod:`hub.cli`'s: a
bad name, predicate or age is a usage error (:class:`KeysInputError`), an unknown policy or key
or a conflict a runtime error (:class:`KeysLookupError`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any

from hub.errors import ApiError
from hub.keys.api import (
    DEFAULT_MAX_AGE,
    check_max_age,
    check_policy_name,
    check_predicate,
    key_json,
    policy_json,
    retire,
    rotate,
    set_policy,
)
from hub.keys.broker import Broker
from hub.statedir import load_hub_keys
from hub.store import Store
from trustcore.keyblob import is_policy_name


class KeysInputError(Exception):
    """A bad policy name, predicate or maximum age (exit code 2)."""


class KeysLookupError(Exception):
    """No such policy or key, or a conflict (exit code 1)."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse
    keys = sub.add_parser("keys", help="image-key policies and keys (the key broker)")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = ksub.add_parser("create", parents=[common], help="a new key policy")
    create.add_argument("policy")
    _policy_options(create, DEFAULT_MAX_AGE)
    ksub.add_parser("list", parents=[common], help="every policy and key, one line each")
    show = ksub.add_parser("show", parents=[common], help="a policy or a key as JSON")
    show.add_argument("name", metavar="POLICY|KEY_ID")
    policy = ksub.add_parser("policy", help="change a key policy")
    psub = policy.add_subparsers(dest="policy_action", required=True, metavar="ACTION")
    pset = psub.add_parser("set", parents=[common], help="set a policy's tags and max age")
    pset.add_argument("policy")
    _policy_options(pset, None)
    rot = ksub.add_parser("rotate", parents=[common], help="a new version of a policy's key")
    rot.add_argument("policy")
    ret = ksub.add_parser("retire", parents=[common], help="retire a key (no more unwraps)")
    ret.add_argument("key_id")


def _policy_options(parser: argparse.ArgumentParser, max_age: float | None) -> None:
    parser.add_argument(
        "--tags",
        metavar="EXPR",
        help="asset-tag predicate, e.g. 'region in [EU, CH] and rack = 7' (docs/keys.md)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=max_age,
        metavar="SECONDS",
        help=f"oldest evidence a release may rest on (default {DEFAULT_MAX_AGE:.0f})"
        if max_age is not None
        else "oldest evidence a release may rest on (unchanged if omitted)",
    )


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _translated(e: ApiError) -> Exception:
    if e.status == 400:
        return KeysInputError(e.message)
    return KeysLookupError(e.message)


async def run(
    args: argparse.Namespace, store: Store, state_dir: Path, credentials_dir: Path | None = None
) -> int:
    """Run one ``keys`` action; raises :class:`KeysInputError`, :class:`KeysLookupError`."""
    try:
        return await _run(args, store, state_dir, credentials_dir)
    except ApiError as e:
        raise _translated(e) from None


async def _run(
    args: argparse.Namespace, store: Store, state_dir: Path, credentials_dir: Path | None
) -> int:
    now = time.time()
    if args.action == "list":
        keys = await store.list_keys()
        print("POLICY\tKEY\tVERSION\tCREATED\tRETIRED\tRELEASES\tREFUSALS\tLAST USE\tTAGS")
        for policy in await store.list_key_policies():
            mine = [k for k in keys if k.policy == policy.name]
            rows = [
                f"{k.id}\t{k.version}\t{_when(k.created)}\t{_when(k.retired)}\t{k.releases}\t"
                f"{k.refusals}\t{_when(k.last_use)}"
                for k in mine
            ] or ["-\t-\t-\t-\t0\t0\t-"]
            for row in rows:
                print(f"{policy.name}\t{row}\t{policy.predicate or '-'}")
        return 0
    if args.action == "show":
        found = await store.get_key_policy(args.name) if is_policy_name(args.name) else None
        if found is not None:
            document = policy_json(found, await store.list_keys(found.name))
        else:
            key = await store.get_key(args.name)
            if key is None:
                raise KeysLookupError(f"no such policy or key: {args.name}")
            document = key_json(key)
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    if args.action in ("create", "policy"):
        name = check_policy_name(args.policy)
        current = await store.get_key_policy(name)
        create = args.action == "create"
        predicate = check_predicate(
            args.tags if args.tags is not None else (current.predicate if current else "")
        )
        age = args.max_age if args.max_age is not None else (current.max_age if current else 0)
        policy = await set_policy(
            store, now, "cli", name, predicate, check_max_age(age), create=create
        )
        print(f"{policy.name}\t{policy.predicate or '-'}\tmax age {policy.max_age:.0f}s")
        return 0
    if args.action == "rotate":
        broker = Broker(load_hub_keys(state_dir, credentials_dir).master_key)
        key = await rotate(store, now, broker, "cli", args.policy)
        print(f"{key.id}\tversion {key.version}")
        return 0
    key = await retire(store, now, "cli", args.key_id)
    print(f"{key.id}\tretired")
    return 0
