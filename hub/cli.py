"""``trustplane-hub``: initialise, run and administer the hub.

Exit codes: 0 success; 1 runtime error (a file cannot be read, the port is taken, no such host);
2 usage or configuration error (bad arguments, a config file with an unknown key or wrong type,
an ``init`` that would overwrite without ``--force``). This is the only module that turns
errors into exit codes.

Commands::

    trustplane-hub init [--state-dir DIR] [--hostname NAME ...] [--force]
    trustplane-hub run [--config FILE] [--listen HOST:PORT]
    trustplane-hub tokens create --role admin|pipeline|viewer --name NAME
    trustplane-hub tokens list | revoke ID
    trustplane-hub hosts list | show HOST | approve HOST | revoke HOST | group HOST (GROUP | --none)
    trustplane-hub flavor import|list|show|delete|assign ...   (see hub.flavorcli)
    trustplane-hub flavor assign --group GROUP ID...          (a host group's flavors)
    trustplane-hub tags set HOST KEY=VALUE ... | clear HOST | show HOST   (see hub.tagcli)
    trustplane-hub keys create|list|show|policy set|rotate|retire ...  (see hub.keys.cli)
    trustplane-hub clusters add NAME (--kubeconfig FILE [--context C] | --in-cluster)
    trustplane-hub clusters list | remove NAME                  (see hub.clusters.cli)
    trustplane-hub audit verify
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from hub import flavorcli, tagcli
from hub.auditseal import audit_sealer
from hub.clusters import cli as clustercli
from hub.config import DEFAULT_CONFIG_FILE, ConfigError, HubConfig, load_config
from hub.groups import GroupError, set_host_group
from hub.keys import cli as keyscli
from hub.notify import Notifier, watchdog_interval
from hub.statedir import (
    DB_FILE,
    ROLES,
    HubKeys,
    StateDirError,
    create_state_dir,
    credentials_directory,
    load_hub_keys,
    new_token,
    store_target,
)
from hub.store import Store

EXIT_OK: Final = 0
EXIT_RUNTIME: Final = 1
EXIT_USAGE: Final = 2

log = logging.getLogger("trustplane.hub")


class UsageError(Exception):
    """Arguments that parse but do not make sense (exit code 2)."""


def _version() -> str:
    try:
        return version("trustplane")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_FILE,
        help=f"main config file; drop-ins in <stem>.d/*.toml (default {DEFAULT_CONFIG_FILE})",
    )
    common.add_argument("--state-dir", type=Path, help="override state.dir from the config")
    p = argparse.ArgumentParser(
        prog="trustplane-hub",
        description="The trustplane hub: enrollment, attestation, trust verdicts, alerts.",
        epilog="Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.",
    )
    p.add_argument("--version", action="version", version=f"trustplane-hub {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = sub.add_parser(
        "init", parents=[common], help="create the CA, keys and first admin token"
    )
    init.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="a name for the server certificate (repeatable; localhost and 127.0.0.1 always)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing state directory")
    run = sub.add_parser("run", parents=[common], help="serve the hub (HTTPS unless server.tls)")
    run.add_argument("--listen", help="HOST:PORT, overrides server.listen")
    tokens = sub.add_parser("tokens", help="bearer tokens for people and pipelines")
    tsub = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tsub.add_parser("create", parents=[common], help="make a token (printed once)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True)
    tsub.add_parser("list", parents=[common], help="list tokens (never their values)")
    revoke = tsub.add_parser("revoke", parents=[common], help="revoke a token by id")
    revoke.add_argument("id", type=int)
    hosts = sub.add_parser("hosts", help="enrolled and pending hosts")
    hsub = hosts.add_subparsers(dest="action", required=True, metavar="ACTION")
    hsub.add_parser("list", parents=[common], help="every host with its verdict")
    show = hsub.add_parser("show", parents=[common], help="one host as JSON")
    show.add_argument("host")
    approve = hsub.add_parser(
        "approve", parents=[common], help="approve a pending host (or re-admit a revoked one)"
    )
    approve.add_argument("host")
    approve.add_argument(
        "--replace",
        metavar="OLD",
        help="the active host whose hostname, node name or DMI UUID this one takes over (it is "
        "retired)",
    )
    revoke = hsub.add_parser(
        "revoke",
        parents=[common],
        help="revoke a host: its certificate stops working, it cannot enroll until approved",
    )
    revoke.add_argument("host")
    group = hsub.add_parser(
        "group",
        parents=[common],
        help="put a host in a host group (its flavors apply too), or in none",
    )
    group.add_argument("host", help="host id, id prefix, node name or hostname")
    which = group.add_mutually_exclusive_group(required=True)
    which.add_argument("group", nargs="?", help="the group (made if new)")
    which.add_argument("--none", action="store_true", help="take the host out of its group")
    flavorcli.add_parser(sub, common)
    tagcli.add_parser(sub, common)
    keyscli.add_parser(sub, common)
    clustercli.add_parser(sub, common)
    audit = sub.add_parser("audit", help="the append-only audit log")
    asub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    asub.add_parser("verify", parents=[common], help="check the audit log's hash chain")
    return p


def _config(args: argparse.Namespace) -> HubConfig:
    overrides: dict[str, Any] = {}
    if args.state_dir is not None:
        overrides["state"] = {"dir": str(args.state_dir)}
    if getattr(args, "listen", None):
        overrides["server"] = {"listen": args.listen}
    return load_config(args.config, overrides=overrides)


async def _with_store(config: HubConfig, fn: Callable[[Store], Awaitable[int]]) -> int:
    db = config.state.dir / DB_FILE
    if config.state.database == "sqlite" and not db.exists():
        raise StateDirError(f"{db} does not exist; run trustplane-hub init")
    store = await Store.open(store_target(config.state.dir, config.state.database))
    keys = _keys_if_readable(config)
    if keys is not None:  # audit rows the CLI writes are sealed like the hub's own
        store.audit_sealer = audit_sealer(config, keys.jws_key)
    try:
        return await fn(store)
    finally:
        await store.close()


def _keys_if_readable(config: HubConfig) -> HubKeys | None:
    try:
        return load_hub_keys(config.state.dir, credentials_directory(os.environ))
    except (StateDirError, OSError):
        return None


async def _init(args: argparse.Namespace, config: HubConfig) -> int:
    now = time.time()
    try:
        create_state_dir(config.state.dir, args.hostname, now, force=args.force)
    except StateDirError as e:
        raise UsageError(str(e)) from None
    token, digest = new_token()
    store = await Store.open(store_target(config.state.dir, config.state.database))
    keys = _keys_if_readable(config)
    if keys is not None:
        store.audit_sealer = audit_sealer(config, keys.jws_key)
    try:
        await store.add_token(digest, "admin", "initial-admin", now)
        await store.audit(
            at=now, actor="cli", action="hub.init", subject=str(config.state.dir), details={}
        )
    finally:
        await store.close()
    if config.state.database == "sqlite":
        (config.state.dir / DB_FILE).chmod(0o600)
    print(f"hub state created in {config.state.dir}")
    print(f"admin token (shown once, stored only as a hash): {token}")
    return EXIT_OK


async def _serve(config: HubConfig) -> int:
    from hub.app import create_app  # noqa: PLC0415 - only `run` needs aiohttp's app
    from hub.gcpolicy import freeze_after_full  # noqa: PLC0415
    from hub.server import start_hub  # noqa: PLC0415

    app = create_app(config, credentials_dir=credentials_directory(os.environ))
    running = await start_hub(app, config)
    log.info("trustplane hub listening on %s", running.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    notifier.ready()
    notifier.status(f"serving on {running.url} (one process)")
    tasks = [
        asyncio.create_task(freeze_after_full(), name="hub-gc-policy"),
        asyncio.create_task(_watchdog(notifier), name="hub-watchdog"),
    ]
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        for task in tasks:
            task.cancel()
        await running.stop()
    return EXIT_OK


async def _watchdog(notifier: Notifier) -> None:
    """WATCHDOG=1 at half of WATCHDOG_USEC from the event loop (a stuck loop stops them)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def _run_workers(config: HubConfig) -> int:
    """``run`` with more than one worker: the parent of :mod:`hub.supervisor` (no event loop
    here: the workers are forked from a process without threads)."""
    from hub.supervisor import Supervisor, worker_count  # noqa: PLC0415

    supervisor = Supervisor(
        config,
        workers=worker_count(config),
        credentials_dir=credentials_directory(os.environ),
    )
    return supervisor.run()


def _workers(config: HubConfig) -> int:
    return config.server.workers or os.cpu_count() or 1


def _check_token_name(name: str) -> None:
    """A token name is 1-100 printable characters, not only blanks; raises :class:`UsageError`."""
    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise UsageError(f"token name {name!r} must be 1-100 printable characters, not blank")


async def _tokens(args: argparse.Namespace, store: Store) -> int:
    if args.action == "create":
        _check_token_name(args.name)
        token, digest = new_token()
        token_id = await store.add_token(digest, args.role, args.name, time.time())
        await store.audit(
            at=time.time(),
            actor="cli",
            action="token.create",
            subject=str(token_id),
            details={"role": args.role, "name": args.name},
        )
        print(token)
        return EXIT_OK
    if args.action == "list":
        for t in await store.list_tokens():
            state = "revoked" if t.revoked else "active"
            print(f"{t.id}\t{t.role}\t{t.name}\t{state}")
        return EXIT_OK
    if not await store.revoke_token(args.id):
        print(f"trustplane-hub: no active token with id {args.id}", file=sys.stderr)
        return EXIT_RUNTIME
    await store.audit(
        at=time.time(), actor="cli", action="token.revoke", subject=str(args.id), details={}
    )
    return EXIT_OK


async def _host_group(args: argparse.Namespace, store: Store) -> int:
    host = await flavorcli.resolve_host(store, args.host)
    group = None if args.none else args.group
    try:
        await set_host_group(store, host.id, group, now=time.time(), actor="cli")
    except GroupError as e:
        raise UsageError(e.message) from None
    print(f"{host.id}\t{group or '-'}")
    return EXIT_OK


async def _hosts(args: argparse.Namespace, store: Store) -> int:
    if args.action == "group":
        return await _host_group(args, store)
    if args.action == "list":
        for h in await store.list_hosts():
            print(f"{h.id}\t{h.state}\t{h.verdict}\t{h.hostname}\t{','.join(h.reasons)}")
        return EXIT_OK
    host = await store.get_host(args.host)
    if host is None:
        print(f"trustplane-hub: no such host: {args.host}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.action == "show":
        from hub.api import host_json  # noqa: PLC0415 - the JSON shape of the API

        print(json.dumps(host_json(host, detail=True), indent=2, sort_keys=True))
        return EXIT_OK
    if args.action == "revoke":
        from hub.api import revoke_host  # noqa: PLC0415

        await revoke_host(store, host.id, actor="cli", now=time.time())
        print(f"revoked {host.id}")
        return EXIT_OK
    from hub.api import ApprovalRefused, approve  # noqa: PLC0415

    try:
        await approve(store, host, replace=args.replace, actor="cli", now=time.time())
    except ApprovalRefused as e:
        print(f"trustplane-hub: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.replace:
        print(f"retired {args.replace}")
    print(f"approved {host.id}")
    return EXIT_OK


async def _audit(store: Store, config: HubConfig) -> int:
    check = await store.verify_audit_chain()
    if check.ok:
        keys = _keys_if_readable(config)
        if keys is None:
            print("trustplane-hub: cannot read the hub's keys to check the seals", file=sys.stderr)
            return EXIT_RUNTIME
        export = config.audit.export_file
        check = await store.verify_audit_seals(
            keys.jws_key.public_key(),
            checkpoint_every=config.audit.checkpoint_every,
            export_file=Path(export) if export else None,
        )
    if check.ok:
        print(f"audit log intact: {check.rows} rows, head and checkpoints signed")
        return EXIT_OK
    print(
        f"trustplane-hub: audit log broken at row {check.first_bad}: {check.problem}",
        file=sys.stderr,
    )
    return EXIT_RUNTIME


async def _dispatch(args: argparse.Namespace, config: HubConfig) -> int:
    if args.command == "init":
        return await _init(args, config)
    if args.command == "run":
        return await _serve(config)
    if args.command == "tokens":
        return await _with_store(config, lambda s: _tokens(args, s))
    if args.command == "hosts":
        return await _with_store(config, lambda s: _hosts(args, s))
    if args.command == "flavor":
        return await _with_store(config, lambda s: flavorcli.run(args, s))
    if args.command == "tags":
        creds = credentials_directory(os.environ)
        return await _with_store(config, lambda s: tagcli.run(args, s, config.state.dir, creds))
    if args.command == "keys":
        creds = credentials_directory(os.environ)
        return await _with_store(config, lambda s: keyscli.run(args, s, config.state.dir, creds))
    if args.command == "clusters":
        creds = credentials_directory(os.environ)
        return await _with_store(config, lambda s: clustercli.run(args, s, config.state.dir, creds))
    return await _with_store(config, lambda s: _audit(s, config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = _config(args)
        if args.command == "run" and _workers(config) > 1:
            return _run_workers(config)
        return asyncio.run(_dispatch(args, config))
    except (
        ConfigError,
        UsageError,
        flavorcli.FlavorInputError,
        tagcli.TagInputError,
        keyscli.KeysInputError,
        clustercli.ClusterInputError,
    ) as e:
        print(f"trustplane-hub: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (
        StateDirError,
        OSError,
        flavorcli.FlavorLookupError,
        tagcli.TagLookupError,
        keyscli.KeysLookupError,
        clustercli.ClusterLookupError,
    ) as e:
        print(f"trustplane-hub: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
