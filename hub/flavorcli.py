"""``trustplane-hub flavor ...``: make, store, show, delete and assign flavors (command line).

Like the other administrative commands it works on the hub's database directly (the hub may be
running: SQLite serialises the writes) and audits every write with actor ``cli``::

    flavor import --from-host HOST [--template T] [--name N]     the host's last verified report
    flavor import --from-eventlog FILE [--template T] [--name N] a known-good event log file
    flavor import FILE.json                                       a firmware_measurements flavor
    flavor list
    flavor show ID [--json]
    flavor delete ID                                              refused while assigned
    flavor assign HOST ID...                                      the host's flavors become ID...
    flavor assign --group GROUP ID...                             the host group's flavors

A template ``T`` is a built-in name (``uefi-secure-boot``, ``txt-tboot``: the files in the
repository's ``firmware_measurements/templates/``, installed by the hub RPM in
``/usr/share/trustplane/templates/``) or a template file. ``HOST`` is a host id, a
unique id prefix, or a unique node name or hostname. Flavors are assigned to a host, to a host
group (:mod:`hub.groups`; ``trustplane-hub hosts group HOST GROUP`` puts a host in one), or
both: a host is verified against its own and its group's (``delete`` is refused while a host
or a group uses the flavor). Turning errors into exit codes is :mod:`hub.cli`'s job: this
module raises :class:`FlavorInputError` (exit 2) and :class:`FlavorLookupError` (exit 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from hub.groups import GroupError, set_group_flavors
from hub.store import Host, Store
from trustcore.errors import TrustcoreError
from trustcore.eventlog import Event, parse_eventlog
from trustcore.flavors import (
    Flavor,
    FlavorMeta,
    FlavorTemplate,
    dump_document,
    evidence_from_eventlog,
    evidence_from_events,
    flavor_from_json,
    flavor_to_json,
    flavors_from_evidence,
    load_json,
    parse_template,
)

__all__ = ["FlavorInputError", "FlavorLookupError", "add_parser", "run"]

TEMPLATE_DIRS: Final = (
    # a checkout (the repository's templates), then where the hub RPM installs them
    Path(__file__).resolve().parent.parent / "firmware_measurements" / "templates",
    Path("/usr/share/trustplane/templates"),
)
DEFAULT_TEMPLATE: Final = "uefi-secure-boot"
MAX_INPUT_BYTES: Final = 16 * 1024 * 1024


class FlavorInputError(Exception):
    """A file or argument that is not what the command needs (exit code 2)."""


class FlavorLookupError(Exception):
    """No such host, flavor or evidence; or a refused deletion (exit code 1)."""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:  # noqa: ANN401 - argparse
    """Add the ``flavor`` command to ``sub`` (the hub CLI's sub-parsers)."""
    flavor = sub.add_parser(
        "flavor",
        help="reference measurements: import, list, show, delete, assign",
        description="Flavors are the known-good measurements hosts are verified against.",
    )
    fsub = flavor.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = fsub.add_parser(
        "import",
        parents=[common],
        help="make flavors from a host or an event log, or store a flavor document",
        description="Make one flavor per template part (ids NAME.platform, NAME.os, ...) from "
        "the host's last verified report (quoted PCRs, replayed events) or from an event log "
        "file (its replay), or store a firmware_measurements flavor document as it is.",
    )
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-host", metavar="HOST", help="host id, id prefix or node name")
    source.add_argument("--from-eventlog", metavar="FILE", type=Path, help="a binary event log")
    source.add_argument("file", nargs="?", type=Path, help="a flavor document (JSON)")
    imp.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        help=f"uefi-secure-boot, txt-tboot or a template file (default {DEFAULT_TEMPLATE})",
    )
    imp.add_argument("--name", help="flavor id prefix (default: the node name or file name)")
    fsub.add_parser("list", parents=[common], help="every stored flavor and the hosts using it")
    show = fsub.add_parser("show", parents=[common], help="one flavor")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the flavor document")
    delete = fsub.add_parser("delete", parents=[common], help="delete a flavor no host uses")
    delete.add_argument("id")
    assign = fsub.add_parser(
        "assign",
        parents=[common],
        help="set the flavors a host (or, with --group, a host group) is verified against",
        usage="trustplane-hub flavor assign [options] (HOST | --group GROUP) ID [ID ...]",
    )
    assign.add_argument(
        "--group", metavar="GROUP", help="assign to this host group (made if new), not a host"
    )
    assign.add_argument("items", nargs="+", metavar="HOST|ID", help="HOST (without --group), IDs")


async def run(args: argparse.Namespace, store: Store) -> int:
    """Run one ``flavor`` action; returns 0 or raises (see the module docstring)."""
    if args.action == "import":
        return await _import(args, store)
    if args.action == "list":
        return await _list(store)
    if args.action == "show":
        return await _show(store, args.id, as_json=args.json)
    if args.action == "delete":
        return await _delete(store, args.id)
    if args.group is not None:
        return await _assign_group(store, args.group, args.items)
    if len(args.items) < 2:
        raise FlavorInputError("flavor assign needs HOST and at least one flavor ID")
    return await _assign(store, args.items[0], args.items[1:])


# --- lookups ---------------------------------------------------------------------------------


async def resolve_host(store: Store, text: str) -> Host:
    """The host named by id, unique id prefix, node name or hostname; raises
    :class:`FlavorLookupError` when none or several match."""
    hosts = await store.list_hosts()
    matches: tuple[Callable[[Host], bool], ...] = (
        lambda h: h.id == text,
        lambda h: h.node_name == text,
        lambda h: h.hostname == text,
        lambda h: h.id.startswith(text.lower()),
    )
    for match in matches:
        found = [h for h in hosts if match(h)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(sorted(h.id[:12] for h in found))
            raise FlavorLookupError(f"{text!r} names several hosts ({ids}); give the host id")
    raise FlavorLookupError(f"no such host: {text}")


def load_template(spec: str) -> FlavorTemplate:
    """A built-in template by name, or a template file; raises :class:`FlavorInputError`."""
    path = None
    if "/" not in spec and not spec.endswith(".json"):
        path = next(
            (d / f"{spec}.json" for d in TEMPLATE_DIRS if (d / f"{spec}.json").is_file()), None
        )
    if path is None:
        path = Path(spec)
    if not path.is_file():
        raise FlavorInputError(
            f"no template {spec!r}: use uefi-secure-boot, txt-tboot or a template file"
        )
    try:
        return parse_template(_read(path).decode("utf-8", errors="strict"))
    except (TrustcoreError, UnicodeDecodeError) as e:
        raise FlavorInputError(f"{path}: not a flavor template: {e}") from None


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise FlavorInputError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    return data


# --- import ----------------------------------------------------------------------------------


async def _import(args: argparse.Namespace, store: Store) -> int:
    if args.file is not None:
        flavors: tuple[Flavor, ...] = (_flavor_document(args.file),)
    elif args.from_eventlog is not None:
        flavors = _from_eventlog(args.from_eventlog, load_template(args.template), args.name)
    else:
        flavors = await _from_host(store, args.from_host, load_template(args.template), args.name)
    now = time.time()
    for flavor in flavors:
        await store.put_flavor(flavor.id, flavor_to_json(flavor), now)
        await store.audit(
            at=now,
            actor="cli",
            action="flavor.import",
            subject=flavor.id,
            details={"source": flavor.meta.source},
        )
        print(f"stored {flavor.id}\t{flavor.part}\t{_pcr_list(flavor)}\t{len(flavor.rules)} rules")
    return 0


def _flavor_document(path: Path) -> Flavor:
    try:
        return flavor_from_json(load_json(_read(path)), str(path))
    except TrustcoreError as e:
        raise FlavorInputError(f"{path}: not a flavor document: {e}") from None


def _from_eventlog(path: Path, template: FlavorTemplate, name: str | None) -> tuple[Flavor, ...]:
    data = _read(path)
    source = f"{path.name} sha256:{hashlib.sha256(data).hexdigest()}"
    try:
        evidence = evidence_from_eventlog(parse_eventlog(data))
        meta = FlavorMeta(source=source)
        return flavors_from_evidence(evidence, template, name or path.stem, meta=meta)
    except TrustcoreError as e:
        raise FlavorInputError(f"{path}: {e}") from None


async def _from_host(
    store: Store, text: str, template: FlavorTemplate, name: str | None
) -> tuple[Flavor, ...]:
    host = await resolve_host(store, text)
    evidence = await store.get_host_evidence(host.id)
    if evidence is None:
        raise FlavorLookupError(f"host {host.id} has no verified report yet")
    events: list[Event] = []
    for log_name, digest in sorted(evidence.eventlogs.items()):
        data = await store.get_eventlog(digest)
        if data is None:
            raise FlavorLookupError(
                f"host {host.id}: the hub no longer holds its {log_name} event log ({digest}); "
                "let the host report again"
            )
        try:  # the hub parsed it and replayed it against the quote when the report came
            events.extend(parse_eventlog(data).events)
        except TrustcoreError as e:
            raise FlavorLookupError(f"host {host.id}: its {log_name} event log: {e}") from None
    at = datetime.fromtimestamp(evidence.received, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = FlavorMeta(source=f"host {host.id} report of {at}")
    measured = evidence_from_events(events, evidence.pcrs, replay_ok=True, asset_tags=host.tags)
    try:
        return flavors_from_evidence(measured, template, name or host.node_name or "", meta=meta)
    except TrustcoreError as e:
        raise FlavorInputError(f"host {host.id}: {e} (choose a flavor name with --name)") from None


def _pcr_list(flavor: Flavor) -> str:
    return "PCR " + ",".join(str(p.index) for p in flavor.pcrs)


# --- list, show, delete, assign --------------------------------------------------------------


async def _users(store: Store) -> dict[str, list[str]]:
    """Flavor id -> labels of the hosts and host groups (``group:NAME``) it is assigned to."""
    users: dict[str, list[str]] = {}
    for host in await store.list_hosts():
        for name in host.flavors:
            users.setdefault(name, []).append(_host_label(host))
    for group in await store.list_groups():
        for name in group.flavors:
            users.setdefault(name, []).append(f"group:{group.name}")
    return users


def _host_label(host: Host) -> str:
    return host.node_name or host.id[:12]


async def _list(store: Store) -> int:
    users = await _users(store)
    for stored in await store.list_flavors():
        flavor = flavor_from_json(stored.document, f"flavor {stored.name}")
        hosts = ",".join(users.get(stored.name, ())) or "-"
        print(f"{flavor.id}\t{flavor.part}\t{_pcr_list(flavor)}\t{hosts}")
    return 0


async def _document(store: Store, flavor_id: str) -> dict[str, Any]:
    found = await store.get_flavors([flavor_id])
    if flavor_id not in found:
        raise FlavorLookupError(f"no such flavor: {flavor_id}")
    return found[flavor_id]


async def _show(store: Store, flavor_id: str, *, as_json: bool) -> int:
    document = await _document(store, flavor_id)
    if as_json:
        print(dump_document(document), end="")
        return 0
    flavor = flavor_from_json(document, f"flavor {flavor_id}")
    users = await _users(store)
    print(f"id: {flavor.id}")
    print(f"part: {flavor.part}")
    print(f"source: {flavor.meta.source or '-'}")
    print(f"template: {flavor.meta.template or '-'}")
    print(f"hosts: {','.join(users.get(flavor.id, ())) or '-'}")
    for ref in flavor.pcrs:
        value = ref.value.hex() if ref.value is not None else "-"
        events = "-" if ref.events is None else f"{len(ref.events)} events"
        print(f"PCR {ref.index}: {value} ({events})")
    for rule in flavor.rules:
        print(f"rule: {rule.rule_id}")
    return 0


async def _delete(store: Store, flavor_id: str) -> int:
    await _document(store, flavor_id)
    using = (await _users(store)).get(flavor_id, [])
    if using:
        names = ", ".join(using)
        raise FlavorLookupError(f"flavor {flavor_id} is assigned to {names}; reassign them first")
    await store.delete_flavor(flavor_id)
    await store.audit(
        at=time.time(), actor="cli", action="flavor.delete", subject=flavor_id, details={}
    )
    print(f"deleted {flavor_id}")
    return 0


async def _assign(store: Store, text: str, ids: Sequence[str]) -> int:
    host = await resolve_host(store, text)
    names = list(dict.fromkeys(ids))
    found = await store.get_flavors(names)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise FlavorLookupError(f"no such flavors: {', '.join(unknown)}")
    await store.set_host_flavors(host.id, names)
    await store.audit(
        at=time.time(),
        actor="cli",
        action="host.flavors",
        subject=host.id,
        details={"flavors": names},
    )
    print(f"{host.id}\t{_host_label(host)}\t{json.dumps(names)}")
    return 0


async def _assign_group(store: Store, group: str, ids: Sequence[str]) -> int:
    try:
        names = await set_group_flavors(store, group, list(ids), now=time.time(), actor="cli")
    except GroupError as e:
        if e.reason == "flavor.unknown":
            raise FlavorLookupError(e.message) from None
        raise FlavorInputError(e.message) from None
    print(f"group:{group}\t{json.dumps(names)}")
    return 0
