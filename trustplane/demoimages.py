"""The demo's encrypted-image step: policy ``region-eu``, a registry, one image, three hosts.

After the trust story of :mod:`trustplane.demo`: the key policy ``region-eu`` (``region in
[EU]``) is created on the hub; host-1 and host-2 get the asset tag ``region=EU`` and host-2 is then
retagged ``region=US`` (each time the agents report, install the hub's tag certificate in their
TPM and report again); a small two-layer image made here is encrypted for ``region-eu`` through
``trustplane-keyprovider`` (the hub's wrap API, a pipeline token) and pushed to Debian's
``docker-registry`` on 127.0.0.1 (started here, stopped when the step ends); the pipeline gate
checks it; then every host pulls and decrypts it through its own agent's key socket: host-1 gets
layers equal to the original, host-2 is refused with ``release.assettag_mismatch`` and host-3
(untrusted since its reboot) with ``release.host_untrusted``.

Encryption and decryption are ``trustplane image encrypt|decrypt`` (the project's ocicrypt layer
format, calling the provider exactly as ocicrypt does) unless ``--skopeo PATH`` names a
key-provider-capable skopeo, which is then used for both, with the demo's own signature policy
file and its caches in the demo's directory. The refusal's reason id comes from the host's key
socket (the provider's line is for people). Everything lives in the demo's working directory.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustplane.imagestore import RegistryClient, RegistryOptions
from trustplane.registryserver import RegistryServer

if TYPE_CHECKING:
    from trustplane.demo import HostRun, HubRun

POLICY: Final = "region-eu"
PREDICATE: Final = "region in [EU]"
REPOSITORY: Final = "demo/app"
PROVIDER_ANNOTATION: Final = "org.opencontainers.image.enc.keys.provider.trustplane"
COMMAND_TIMEOUT: Final = 120.0


class ImageStepFailure(Exception):
    """A step of the image part failed; the message is the line the user sees."""


Say = Callable[[str], None]


@dataclass(frozen=True)
class ImageOptions:
    skopeo: str | None
    timeout: float


def keys_socket(host_dir: Path) -> Path:
    """Where a demo host's agent serves its key socket."""
    return host_dir / "keys.sock"


def make_image(root: Path, tag: str) -> list[str]:
    """A small OCI image layout (two gzip tar layers); returns the layer digests."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    files = [
        {"etc/demo-release": b"trustplane demo image 1.0\n"},
        {"app/hello.sh": b"#!/bin/sh\necho 'hello from an image only trusted EU hosts can run'\n"},
    ]
    layers, diff_ids = [], []
    for content in files:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in content.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755
                tar.addfile(info, io.BytesIO(data))
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        layer = gzip.compress(raw.getvalue(), mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh", "/app/hello.sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **put(json.dumps(config).encode()),
        },
        "layers": layers,
    }
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **put(json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return [str(layer["digest"]) for layer in layers]


def layer_digests(root: Path, tag: str) -> list[str]:
    index = json.loads((root / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = json.loads((root / "blobs" / "sha256" / entry["digest"][7:]).read_bytes())
            return [str(layer["digest"]) for layer in manifest["layers"]]
    return []


def hub_post(hub: HubRun, path: str, body: dict[str, Any], method: str = "POST") -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=10)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def socket_reason(path: Path, annotation: bytes, timeout: float) -> tuple[str, str]:
    """Ask a host's key socket for one layer key; the refusal's reason id and message."""
    request = {"op": "unwrap", "annotation": base64.b64encode(annotation).decode()}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    reply = json.loads(data)
    if reply.get("ok"):
        return "", ""
    return str(reply.get("reason", "")), str(reply.get("message", ""))


@dataclass
class ImageStep:
    work: Path
    hub: HubRun
    hosts: Sequence[HostRun]
    options: ImageOptions
    say: Say

    def __post_init__(self) -> None:
        self.dir = self.work / "images"
        self.dir.mkdir()

    # --- commands --------------------------------------------------------------------------

    def _env(self, provider_config: Path) -> dict[str, str]:
        return {
            **os.environ,
            "OCICRYPT_KEYPROVIDER_CONFIG": str(self.dir / "ocicrypt.conf"),
            "TRUSTPLANE_KEYPROVIDER_CONFIG": str(provider_config),
            "_CONTAINERS_ROOTLESS_UID": "65534",
            "XDG_DATA_HOME": str(self.dir / "xdg"),
        }

    def _run(self, argv: list[str], provider_config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=self._env(provider_config),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def copy(self, key: list[str], src: str, dst: str, provider_config: Path) -> tuple[str, str]:
        """Encrypt or decrypt ``src`` into ``dst``; the command line shown and the error line."""
        if self.options.skopeo:
            policy = self.dir / "policy.json"
            flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
            argv = [self.options.skopeo, "copy", "--policy", str(policy), *flags, *key, src, dst]
            shown = ["skopeo", "copy", *flags, *key, src, dst]
        else:
            verb = "encrypt" if key[0] == "--encryption-key" else "decrypt"
            words = ["image", verb, src, dst, *key, "--plain-http"]
            argv = [sys.executable, "-m", "trustplane", *words]
            shown = ["trustplane", *words]
        done = self._run(argv, provider_config)
        lines = done.stderr.strip().splitlines()
        error = "" if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")
        return " ".join(shown), error

    # --- the story --------------------------------------------------------------------------

    def tag_hosts(self, ids: dict[str, str]) -> None:
        for name, value in (("host-1", "EU"), ("host-2", "EU"), ("host-2", "US")):
            since = time.time()
            # the API twin of `trustplane-hub tags set` (no CLI start-up: the demo runs in CI)
            status, answer = hub_post(
                self.hub, f"/v1/hosts/{ids[name]}/tags", {"tags": {"region": value}}, "PUT"
            )
            if status != 200:
                raise ImageStepFailure(f"PUT /v1/hosts/{name}/tags: HTTP {status}: {answer}")
            self.say(f"tags of {name} set to region={value} (PUT /v1/hosts/ID/tags)")
            host = next(h for h in self.hosts if h.name == name)
            if host.proc is not None:
                host.proc.send_signal(signal.SIGUSR1)
            self._wait_tagged(ids[name], name, value, since)

    def _wait_tagged(self, host_id: str, name: str, value: str, since: float) -> None:
        deadline = time.monotonic() + self.options.timeout
        while time.monotonic() < deadline:
            d = self.hub.get(f"/v1/hosts/{host_id}")
            if d["verdict"] == "trusted" and (d["last_report"] or 0) >= since:
                self.say(f"{name}: its TPM holds the tag certificate region={value}; trusted")
                return
            time.sleep(0.2)
        raise ImageStepFailure(f"timed out waiting for {name} to report with region={value}")

    def write_provider_configs(self) -> Path:
        token = self.hub.cli(["tokens", "create"], "--role", "pipeline", "--name", "demo-pipeline")
        token_file = self.dir / "pipeline.token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token.strip() + "\n")
        self.say("$ trustplane-hub tokens create --role pipeline --name demo-pipeline")
        provider = Path(sys.executable).with_name("trustplane-keyprovider")
        (self.dir / "ocicrypt.conf").write_text(
            json.dumps({"key-providers": {"trustplane": {"cmd": {"path": str(provider)}}}})
        )
        (self.dir / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        pipeline = self.dir / "keyprovider-pipeline.toml"
        pipeline.write_text(
            f'[hub]\nurl = "{self.hub.url}"\nca_file = "{self.hub.ca_file}"\n'
            f'token_file = "{token_file}"\n'
        )
        for host in self.hosts:
            (self.dir / f"keyprovider-{host.name}.toml").write_text(
                f'socket = "{keys_socket(host.dir)}"\n'
            )
        return pipeline

    def run(self, ids: dict[str, str]) -> dict[str, Any]:
        status, answer = hub_post(
            self.hub, "/v1/keys/policies", {"name": POLICY, "predicate": PREDICATE}
        )
        if status != 201:
            raise ImageStepFailure(f"POST /v1/keys/policies: HTTP {status}: {answer}")
        self.say(f"key policy {POLICY} created: hosts must be trusted and carry {PREDICATE}")
        self.tag_hosts(ids)
        pipeline = self.write_provider_configs()
        with RegistryServer(self.dir / "registry") as registry:
            self.say(f"registry: Debian's docker-registry on {registry.host} (plain HTTP)")
            return self._with_registry(registry, pipeline)

    def _with_registry(self, registry: RegistryServer, pipeline: Path) -> dict[str, Any]:
        plain = self.dir / "app"
        originals = make_image(plain, "1.0")
        self.say(f"image {plain.name}:1.0 made: {len(originals)} layers")
        remote = f"docker://{registry.host}/{REPOSITORY}:1.0-enc"
        key = ["--encryption-key", f"provider:trustplane:policy={POLICY}"]
        shown, error = self.copy(key, f"oci:{plain}:1.0", remote, pipeline)
        self.say(f"$ {shown}")
        if error:
            raise ImageStepFailure(f"encrypting the demo image failed: {error}")
        check = subprocess.run(
            [sys.executable, "-m", "trustplane", "image", "check", "--plain-http", remote],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        last = check.stdout.strip().splitlines()[-1:] or [check.stderr.strip()]
        self.say(f"$ trustplane image check {remote}: {last[0]}")
        if check.returncode != 0:
            raise ImageStepFailure(f"the encrypted image does not pass the gate: {last[0]}")
        manifest = RegistryClient(
            registry.host, REPOSITORY, "1.0-enc", RegistryOptions(plain_http=True)
        ).get_manifest()[0]
        first = json.loads(manifest)["layers"][0]
        annotation = base64.b64decode(first["annotations"][PROVIDER_ANNOTATION])
        hosts: dict[str, dict[str, Any]] = {}
        for host in self.hosts:
            hosts[host.name] = self.decrypt_on(host, remote, originals, annotation)
        return {
            "encrypted_by": "skopeo" if self.options.skopeo else "trustplane",
            "image": remote,
            "hosts": hosts,
        }

    def decrypt_on(
        self, host: HostRun, remote: str, originals: list[str], annotation: bytes
    ) -> dict[str, Any]:
        out = self.dir / f"{host.name}-pulled"
        config = self.dir / f"keyprovider-{host.name}.toml"
        key = ["--decryption-key", "provider:trustplane"]
        shown, error = self.copy(key, remote, f"oci:{out}:1.0", config)
        self.say(f"{host.name}$ {shown}")
        if not error:
            equal = layer_digests(out, "1.0") == originals
            self.say(
                f"{host.name}: decrypted; layers {'equal' if equal else 'DIFFER from'} the original"
            )
            if not equal:
                raise ImageStepFailure(f"{host.name}: decrypted layers differ from the original")
            return {"decrypted": True}
        reason, message = socket_reason(keys_socket(host.dir), annotation, self.options.timeout)
        self.say(f"{host.name}: refused ({reason or 'no reason id'}): {error}")
        return {"decrypted": False, "reason": reason or None, "message": message or error}
