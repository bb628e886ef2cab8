"""Helpers for tests of encrypted images: small OCI images built here, and a key-provider double.

The provider double is a test double of a *peer* the code under test drives (ocicrypt's ``cmd``
key provider), legitimate because the driver (:mod:`trustplane.imagecrypt`) is what the tests
check: it does what the provider that recorded tests/data/fixtures/ocicrypt did (AES-256-GCM of
``optsdata`` under the recorded key 00 01 .. 1f), wrapped in a trustplane key blob so that the
pipeline gate can read key id and policy, or, in ``recording`` mode, in the recording provider's
own ``{"nonce", "ct"}`` envelope so that skopeo's real encrypted image unwraps. It logs every
request it gets, counts how many of its processes are alive at once, and refuses when asked to,
with one stderr line as the real provider does. The real provider (``trustplane-keyprovider``)
replaces it in the whole-flow tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "fixtures" / "ocicrypt"
RECORDED_KEY_HEX = bytes(range(32)).hex()

PROVIDER_DOUBLE = r"""
import base64, json, os, sys, time
sys.path.insert(0, REPO)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from trustcore.keyblob import KeyBlob, parse_key_blob

state = os.environ["PROVIDER_STATE"]
mode = os.environ.get("PROVIDER_MODE", "blob")
total = int(os.environ.get("PROVIDER_TOTAL", "0"))
key = AESGCM(bytes.fromhex(KEY_HEX))
request = sys.stdin.buffer.read()
me = str(os.getpid())
live, done, log = (os.path.join(state, d) for d in ("live", "done", "requests"))
for d in (live, done, log):
    os.makedirs(d, exist_ok=True)
open(os.path.join(live, me), "w").close()
with open(os.path.join(log, me + ".json"), "wb") as f:
    f.write(request)
seen = len(os.listdir(live))
deadline = time.monotonic() + 20
while total and time.monotonic() < deadline:
    n_live = len(os.listdir(live))
    seen = max(seen, n_live)
    if n_live >= 6 or n_live + len(os.listdir(done)) >= total:
        break
    time.sleep(0.01)
with open(os.path.join(state, "seen-" + me), "w") as f:
    f.write(str(seen))
try:
    if os.environ.get("PROVIDER_REFUSE"):
        sys.stderr.write(os.environ["PROVIDER_REFUSE"] + "\n")
        sys.exit(1)
    msg = json.loads(request)
    if msg["op"] == "keywrap":
        params = msg["keywrapparams"]["ec"]["Parameters"]["trustplane"]
        policy = base64.b64decode(params[0]).decode().removeprefix("policy=")
        optsdata = base64.b64decode(msg["keywrapparams"]["optsdata"])
        iv = os.urandom(12)
        if mode == "recording":
            blob = json.dumps({"nonce": base64.b64encode(iv).decode(),
                               "ct": base64.b64encode(key.encrypt(iv, optsdata, None)).decode()})
            blob = blob.encode()
        else:
            shape = KeyBlob(key_id="k-test-1", policy=policy, hub="https://127.0.0.1:8443",
                            iv=iv, ciphertext=b"\0" * 32)
            blob = KeyBlob(key_id=shape.key_id, policy=policy, hub=shape.hub, iv=iv,
                           ciphertext=key.encrypt(iv, optsdata, shape.associated_data())).encode()
        out = {"keywrapresults": {"annotation": base64.b64encode(blob).decode()}}
    else:
        blob = base64.b64decode(msg["keyunwrapparams"]["annotation"])
        if mode == "recording":
            env = json.loads(blob)
            nonce, ct = base64.b64decode(env["nonce"]), base64.b64decode(env["ct"])
            optsdata = key.decrypt(nonce, ct, None)
        else:
            kb = parse_key_blob(blob)
            optsdata = key.decrypt(kb.iv, kb.ciphertext, kb.associated_data())
        out = {"keyunwrapresults": {"optsdata": base64.b64encode(optsdata).decode()}}
    sys.stdout.write(json.dumps(out))
finally:
    os.rename(os.path.join(live, me), os.path.join(done, me))
"""


def write_provider_double(directory: Path) -> tuple[Path, Path]:
    """The provider script and an ocicrypt provider config naming it ``trustplane``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "provider-double"
    body = PROVIDER_DOUBLE.replace("REPO)", repr(str(REPO)) + ")").replace(
        "KEY_HEX", repr(RECORDED_KEY_HEX)
    )
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    config = directory / "ocicrypt.conf"
    config.write_text(
        json.dumps({"key-providers": {"trustplane": {"cmd": {"path": str(script), "args": []}}}})
    )
    return script, config


def requests_seen(state: Path) -> list[dict]:
    """Every request the provider double got (parsed JSON)."""
    return [json.loads(p.read_bytes()) for p in sorted((state / "requests").glob("*.json"))]


def max_alive(state: Path) -> int:
    """The most provider processes any one of them saw alive at once."""
    return max(int(p.read_text()) for p in state.glob("seen-*"))


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _put(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_image(
    root: Path, tag: str, layers: int, *, layer_bytes: int = 2000, docker: bool = False
) -> list[str]:
    """An OCI layout at ``root`` with ``layers`` gzip tar layers; returns the layer digests.
    ``docker``: a Docker schema 2 manifest and media types (what ``docker push`` writes)."""
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    oci = "application/vnd.oci.image"
    docker_types = "application/vnd.docker"
    types = {
        "layer": f"{docker_types}.image.rootfs.diff.tar.gzip"
        if docker
        else f"{oci}.layer.v1.tar+gzip",
        "config": f"{docker_types}.container.image.v1+json" if docker else f"{oci}.config.v1+json",
        "manifest": (
            f"{docker_types}.distribution.manifest.v2+json" if docker else f"{oci}.manifest.v1+json"
        ),
    }
    descs, diff_ids = [], []
    for i in range(layers):
        seed = hashlib.sha256(f"{root.name}-{tag}-{i}".encode()).digest()
        content = (seed * (layer_bytes // 32 + 1))[:layer_bytes]
        tar_gz = _tar_gz({f"layer-{i}.txt": content})
        diff_ids.append("sha256:" + hashlib.sha256(gzip.decompress(tar_gz)).hexdigest())
        descs.append({"mediaType": types["layer"], **_put(root, tar_gz)})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": types["manifest"],
            "config": {"mediaType": types["config"], **_put(root, config)},
            "layers": descs,
        }
    ).encode()
    entry = {
        "mediaType": types["manifest"],
        **_put(root, manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return [d["digest"] for d in descs]


def layout_manifest(root: Path, tag: str) -> dict:
    index = json.loads((root / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return json.loads((root / "blobs" / "sha256" / m["digest"][7:]).read_bytes())
    raise KeyError(tag)


def layout_manifest_digest(root: Path, tag: str) -> str:
    index = json.loads((root / "index.json").read_text())
    return next(
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
