"""The same encrypt/decrypt with an upstream skopeo >= 1.11, when ``TRUSTPLANE_SKOPEO`` names one.

Debian 12's skopeo 1.9.3 cannot call key providers and no newer one can be installed here, so
this is the one test of this area that skips: it runs when ``TRUSTPLANE_SKOPEO`` is the path of
a key-provider-capable skopeo. Flags as ../shared/real-peers.md says: our own signature policy
file, skopeo's blob-info cache kept in the temp dir, plain HTTP to the registry on 127.0.0.1.
Images made by skopeo must pass our gate and decrypt with our driver, and the other way round;
a refusing provider's line must end skopeo's error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imagekit import FIXTURE, build_image, layout_manifest, write_provider_double
from trustplane.registryserver import RegistryServer

SKOPEO = os.environ.get("TRUSTPLANE_SKOPEO")
pytestmark = pytest.mark.skipif(
    not SKOPEO,
    reason="TRUSTPLANE_SKOPEO is not set: no skopeo >= 1.11 with ocicrypt key providers on this "
    "machine (Debian 12 ships 1.9.3, which cannot call them)",
)
DENIAL = "trustplane: key release denied: host untrusted (flavor.platform.pcr_mismatch: PCR 0)"
PLAIN_LAYERS = [
    "sha256:e8762c9e5f0cf1a0861897accbd8c1b2514b8604358c7ab72996d5cae06658d8",
    "sha256:b725a8a6e47c17e1dd60c34db7577ff7d75ca6de7127e14cc198d2e4370c528c",
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    _, config = write_provider_double(tmp_path / "provider")
    (tmp_path / "state").mkdir()
    return {
        **os.environ,
        "OCICRYPT_KEYPROVIDER_CONFIG": str(config),
        "PROVIDER_STATE": str(tmp_path / "state"),
        "_CONTAINERS_ROOTLESS_UID": "65534",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }


def skopeo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    assert SKOPEO is not None
    return subprocess.run(
        [SKOPEO, "copy", "--policy", str(policy), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ours(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustplane", "image", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_skopeo_encrypts_we_check_and_decrypt(
    registry: RegistryServer, tmp_path: Path, env: dict[str, str]
) -> None:
    remote = f"docker://{registry.host}/skopeo/enc:v1"
    done = skopeo(
        tmp_path,
        env,
        "--dest-tls-verify=false",
        "--encryption-key",
        "provider:trustplane:policy=region-eu",
        f"oci:{FIXTURE / 'plain-image'}:v1",
        remote,
    )
    assert done.returncode == 0, done.stderr
    check = ours(env, "check", "--plain-http", "--json", remote)
    assert check.returncode == 0, check.stdout
    assert [v["policy"] for v in json.loads(check.stdout)["layers"]] == ["region-eu"] * 2
    done = ours(
        env,
        "decrypt",
        "--plain-http",
        "--decryption-key",
        "provider:trustplane",
        remote,
        f"oci:{tmp_path / 'dec'}:v1",
    )
    assert done.returncode == 0, done.stderr
    assert [d["digest"] for d in layout_manifest(tmp_path / "dec", "v1")["layers"]] == PLAIN_LAYERS


def test_we_encrypt_skopeo_decrypts_and_a_refusal_ends_its_error(
    registry: RegistryServer, tmp_path: Path, env: dict[str, str]
) -> None:
    originals = build_image(tmp_path / "img", "v1", 3)
    remote = f"docker://{registry.host}/ours/enc:v1"
    done = ours(
        env,
        "encrypt",
        "--plain-http",
        "--encryption-key",
        "provider:trustplane:policy=region-eu",
        f"oci:{tmp_path / 'img'}:v1",
        remote,
    )
    assert done.returncode == 0, done.stderr
    done = skopeo(
        tmp_path,
        env,
        "--src-tls-verify=false",
        "--decryption-key",
        "provider:trustplane",
        remote,
        f"oci:{tmp_path / 'dec'}:v1",
    )
    assert done.returncode == 0, done.stderr
    assert [d["digest"] for d in layout_manifest(tmp_path / "dec", "v1")["layers"]] == originals
    done = skopeo(
        tmp_path,
        {**env, "PROVIDER_REFUSE": DENIAL},
        "--src-tls-verify=false",
        "--decryption-key",
        "provider:trustplane",
        remote,
        f"oci:{tmp_path / 'no'}:v1",
    )
    assert done.returncode != 0
    assert done.stderr.rstrip().endswith(DENIAL)
