"""``trustplane image check|encrypt|decrypt``: the pipeline gate and ocicrypt-compatible copies.

``check REF`` prints each layer's key id and policy and exits 0 only when every layer is
encrypted for the trustplane key provider (:mod:`trustcore.imagegate`); ``encrypt SRC DST`` and
``decrypt SRC DST`` copy an image through the key provider named in ``OCICRYPT_KEYPROVIDER_CONFIG``
(:mod:`trustplane.imagecrypt`). References are ``oci:DIR[:TAG]`` or
``docker://HOST[:PORT]/REPO[:TAG]``; ``--plain-http`` talks HTTP to the registry (a registry on
127.0.0.1 without TLS). :mod:`trustplane.cli` registers the commands and turns errors into exit
codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from trustcore.imagegate import PROVIDER, ImageVerdict, check_layers
from trustcore.oci import parse_image_reference, parse_manifest
from trustcore.ocicrypt import parse_provider_key
from trustplane.imagecrypt import (
    CONFIG_ENV,
    CopyResult,
    decrypt_image,
    encrypt_image,
    load_provider_config,
)
from trustplane.imagestore import RegistryOptions, open_store, sha256_digest
from trustplane.registryauth import environment_auth, load_auth_file

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1


def _options(args: argparse.Namespace) -> RegistryOptions:
    creds = load_auth_file(args.authfile) if args.authfile else environment_auth(os.environ)
    return RegistryOptions(plain_http=args.plain_http, ca_file=args.ca_file, credentials=creds)


def verdict_json(ref: str, manifest_digest: str, verdict: ImageVerdict) -> dict[str, Any]:
    return {
        "image": ref,
        "manifest": manifest_digest,
        "ok": verdict.ok,
        "reason": verdict.reason,
        "message": verdict.message,
        "layers": [
            {
                "index": v.index,
                "digest": v.digest,
                "media_type": v.media_type,
                "ok": v.ok,
                "reason": v.reason,
                "message": v.message,
                "key_id": v.key_id,
                "policy": v.policy,
                "hub": v.hub,
            }
            for v in verdict.layers
        ],
    }


def cmd_check(args: argparse.Namespace) -> int:
    ref = parse_image_reference(args.image)
    data, media_type = open_store(ref, _options(args)).get_manifest()
    manifest = parse_manifest(data, media_type)
    verdict = check_layers(manifest.layers, args.provider)
    if args.json:
        sys.stdout.write(json.dumps(verdict_json(str(ref), sha256_digest(data), verdict)) + "\n")
    else:
        for v in verdict.layers:
            if v.ok:
                sys.stdout.write(
                    f"layer {v.index} {v.digest}: encrypted, key {v.key_id}, policy {v.policy}, "
                    f"hub {v.hub}\n"
                )
            else:
                sys.stdout.write(f"layer {v.index} {v.digest}: {v.reason}: {v.message}\n")
        sys.stdout.write(f"{ref}: {'ok' if verdict.ok else 'refused'}: {verdict.message}\n")
    return EXIT_OK if verdict.ok else EXIT_REFUSED


def _config_path(args: argparse.Namespace) -> Path | None:
    if args.keyprovider_config is not None:
        return Path(args.keyprovider_config)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def _report(result: CopyResult, verb: str, src: str, dst: str) -> None:
    changed = sum(1 for layer in result.layers if layer.changed)
    for layer in result.layers:
        if layer.changed:
            sys.stderr.write(
                f"layer {layer.index}: {layer.source_digest} -> {layer.target_digest}\n"
            )
    sys.stderr.write(
        f"{verb} {changed} of {len(result.layers)} layers: {src} -> {dst} "
        f"(manifest {result.manifest_digest})\n"
    )


def cmd_encrypt(args: argparse.Namespace) -> int:
    key = parse_provider_key(args.encryption_key)
    config = load_provider_config(_config_path(args))
    src, dst = parse_image_reference(args.source), parse_image_reference(args.destination)
    options = _options(args)
    result = encrypt_image(open_store(src, options), open_store(dst, options), key, config)
    _report(result, "encrypted", str(src), str(dst))
    return EXIT_OK


def cmd_decrypt(args: argparse.Namespace) -> int:
    key = parse_provider_key(args.decryption_key)
    config = load_provider_config(_config_path(args))
    src, dst = parse_image_reference(args.source), parse_image_reference(args.destination)
    options = _options(args)
    result = decrypt_image(open_store(src, options), open_store(dst, options), key, config)
    _report(result, "decrypted", str(src), str(dst))
    return EXIT_OK


def _transport(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="talk plain HTTP to docker:// registries (a registry on 127.0.0.1 without TLS)",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="CA bundle for HTTPS registries (default: the system's)",
    )
    parser.add_argument(
        "--authfile",
        type=Path,
        metavar="FILE",
        help="registry credentials, as skopeo reads them (default: $REGISTRY_AUTH_FILE, "
        "$XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json)",
    )


def _keyprovider_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keyprovider-config",
        metavar="FILE",
        help=f"ocicrypt key-provider config (default: ${CONFIG_ENV})",
    )


REF_HELP: Final = "oci:DIR[:TAG] or docker://HOST[:PORT]/REPO[:TAG]"


def add_image_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``trustplane image ...`` on the top-level subparsers."""
    image = commands.add_parser(
        "image", help="check, encrypt and decrypt OCI images (ocicrypt key providers)"
    )
    sub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")

    check = sub.add_parser(
        "check",
        help="pipeline gate: exit 0 only if every layer is encrypted for the trustplane provider",
        description="Prints each layer's key id, policy and hub (or why it fails); exit status "
        "0 when every layer is encrypted for the provider and for nothing else, 1 otherwise.",
    )
    check.add_argument("image", metavar="REF", help=REF_HELP)
    check.add_argument(
        "--json",
        action="store_true",
        help='print {"image", "manifest", "ok", "reason", "message", "layers": [...]} as JSON',
    )
    check.add_argument(
        "--provider",
        default=PROVIDER,
        metavar="NAME",
        help=f"the key provider every layer must use (default {PROVIDER})",
    )
    _transport(check)
    check.set_defaults(handler=cmd_check)

    encrypt = sub.add_parser(
        "encrypt",
        help="copy SRC to DST encrypting every layer through a key provider",
        description="ocicrypt's layer format and provider protocol, as skopeo copy "
        "--encryption-key does.",
    )
    encrypt.add_argument("source", metavar="SRC", help=REF_HELP)
    encrypt.add_argument("destination", metavar="DST", help=REF_HELP)
    encrypt.add_argument(
        "--encryption-key",
        required=True,
        metavar="provider:NAME:PARAMS",
        help="e.g. provider:trustplane:policy=region-eu",
    )
    _keyprovider_config(encrypt)
    _transport(encrypt)
    encrypt.set_defaults(handler=cmd_encrypt)

    decrypt = sub.add_parser(
        "decrypt",
        help="copy SRC to DST decrypting every encrypted layer through a key provider",
        description="ocicrypt's layer format and provider protocol, as skopeo copy "
        "--decryption-key does; a refused key fails with the provider's message.",
    )
    decrypt.add_argument("source", metavar="SRC", help=REF_HELP)
    decrypt.add_argument("destination", metavar="DST", help=REF_HELP)
    decrypt.add_argument(
        "--decryption-key", required=True, metavar="provider:NAME", help="e.g. provider:trustplane"
    )
    _keyprovider_config(decrypt)
    _transport(decrypt)
    decrypt.set_defaults(handler=cmd_decrypt)
