"""``trustplane-hub tags``: set, clear and show a host's asset tags (the CLI twin of
``PUT /v1/hosts/{id}/tags``).

Commands::

    trustplane-hub tags set HOST KEY=VALUE [KEY=VALUE ...]   replace the host's tags, issue its
                                                             tag certificate (printed: SHA-384)
    trustplane-hub tags clear HOST                           remove tags and certificate
    trustplane-hub tags show HOST                            tags and certificate as JSON

Issuing is :func:`hub.assettags.set_host_tags`; exit codes are :mod:`hub.cli`'s (bad tags are a
usage error, an unknown host a runtime error).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hub.assettags import UnknownHost, set_host_tags, tags_answer
from hub.statedir import load_hub_keys
from hub.store import Store
from trustcore.assettag import AssetTagError, check_tags


class TagInputError(Exception):
    """Tags that cannot be issued (exit code 2)."""


class TagLookupError(Exception):
    """No such host (exit code 1)."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse
    tags = sub.add_parser("tags", help="asset tags and tag certificates")
    tsub = tags.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_ = tsub.add_parser("set", parents=[common], help="replace a host's tags (issues a cert)")
    set_.add_argument("host")
    set_.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    clear = tsub.add_parser("clear", parents=[common], help="remove a host's tags")
    clear.add_argument("host")
    show = tsub.add_parser("show", parents=[common], help="a host's tags and certificate")
    show.add_argument("host")


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``["region=EU", "rack=7"]`` -> a dict; raises :class:`TagInputError`."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TagInputError(f"{pair!r} is not KEY=VALUE")
        if key in out:
            raise TagInputError(f"tag {key!r} given twice")
        out[key] = value
    return out


async def run(
    args: argparse.Namespace, store: Store, state_dir: Path, credentials_dir: Path | None = None
) -> int:
    """Run one ``tags`` action; raises :class:`TagInputError`, :class:`TagLookupError`.

    Bad tags are refused before the host is looked up (a usage error whatever the host)."""
    tags = parse_pairs(args.tags) if args.action == "set" else {}
    try:
        tags = check_tags(tags)
    except AssetTagError as e:
        raise TagInputError(e.message) from None
    host = await store.get_host(args.host)
    if host is None:
        raise TagLookupError(f"no such host: {args.host}")
    if args.action == "show":
        der = await store.get_tag_certificate(host.id)
        print(json.dumps(tags_answer(host.id, dict(host.tags), der), indent=2, sort_keys=True))
        return 0
    try:
        der = await set_host_tags(
            store,
            load_hub_keys(state_dir, credentials_dir).tag_ca,
            host.id,
            tags,
            now=time.time(),
            actor="cli",
        )
    except AssetTagError as e:
        raise TagInputError(e.message) from None
    except UnknownHost:
        raise TagLookupError(f"no such host: {args.host}") from None
    answer = tags_answer(host.id, tags, der)
    print(f"{host.id}\t{answer['sha384'] or 'no tags'}")
    return 0
