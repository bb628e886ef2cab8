"""deploy/tekton: the Task that encrypts with skopeo and gates with ``trustplane image check``.

Its structure is checked against the Tekton v1 Task fields written down in tests/data/tekton
(kubernetes-validate has no Tekton schema); its ``check`` step's script is run for real, with
Tekton's ``$(params.*)`` substitution done here, against images in a real docker-registry: it
must pass an image encrypted for trustplane and fail a plain one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.imagekit import FIXTURE, write_provider_double
from trustplane.registryserver import RegistryServer

REPO = Path(__file__).resolve().parent.parent
TASK_FILE = REPO / "deploy" / "tekton" / "trustplane-encrypt-image.yaml"
SCHEMA = json.loads((REPO / "tests" / "data" / "tekton" / "task-v1.schema.json").read_text())
VARIABLE = re.compile(r"\$\((params|results|workspaces)\.([A-Za-z0-9_.-]+?)(\.path)?\)")


def task() -> dict[str, Any]:
    doc = yaml.safe_load(TASK_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_the_task_has_tekton_v1_task_fields_only() -> None:
    jsonschema.validate(task(), SCHEMA)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "steps", 0, "name"), "Encrypt_Image"),
        (("spec", "steps", 0, "command"), ["skopeo"]),
        (("spec", "params", 0, "type"), "int"),
        (("spec", "resources"), {}),
        (("apiVersion",), "tekton.dev/v1beta1"),
        (("spec", "volumes", 0, "secret", "defaultMode"), 4000),
    ],
)
def test_the_schema_refuses_what_tekton_refuses(path: tuple[Any, ...], value: object) -> None:
    doc = task()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_params_results_volumes_and_the_token_are_wired() -> None:
    spec = task()["spec"]
    text = TASK_FILE.read_text()
    declared = {p["name"] for p in spec["params"]}
    used = {name for kind, name, _ in VARIABLE.findall(text) if kind == "params"}
    assert used == declared
    assert {n for k, n, _ in VARIABLE.findall(text) if k == "results"} == {
        r["name"] for r in spec["results"]
    }
    names = [s["name"] for s in spec["steps"]]
    assert names == ["encrypt", "check"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in spec["stepTemplate"]["volumeMounts"]}
    assert set(mounts) == set(volumes)
    assert volumes["pipeline-token"]["secret"]["defaultMode"] == 0o440
    assert mounts["pipeline-token"]["readOnly"] is True
    assert all("valueFrom" not in e for e in spec["stepTemplate"]["env"])
    encrypt = spec["steps"][0]["script"]
    assert '--encryption-key "provider:trustplane:policy=$(params.policy)"' in encrypt
    assert 'skopeo copy --policy "$WORK/policy.json"' in encrypt
    assert encrypt.index("umask 077") < encrypt.index('> "$WORK/pipeline.token"')
    env = {e["name"]: e["value"] for e in spec["stepTemplate"]["env"]}
    assert env["OCICRYPT_KEYPROVIDER_CONFIG"] == "/work/ocicrypt.conf"
    assert env["TRUSTPLANE_KEYPROVIDER_CONFIG"] == "/work/keyprovider.toml"
    assert env["TOKEN_SOURCE"] == "/etc/trustplane/pipeline/token"
    assert mounts["pipeline-token"]["mountPath"] == "/etc/trustplane/pipeline"
    assert 'trustplane image check $plain "$(params.destination)"' in spec["steps"][1]["script"]


def test_every_step_script_is_valid_sh(tmp_path: Path) -> None:
    params = {p["name"]: f"value-{p['name']}" for p in task()["spec"]["params"]}
    for step in task()["spec"]["steps"]:
        script = tmp_path / f"{step['name']}.sh"
        script.write_text(substitute(step["script"], params, tmp_path))
        done = subprocess.run(
            ["sh", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert (step["name"], done.returncode, done.stderr) == (step["name"], 0, "")


def substitute(script: str, params: dict[str, str], results: Path) -> str:
    def value(match: re.Match[str]) -> str:
        kind, name, _ = match.groups()
        return str(results / name) if kind == "results" else params[name]

    return VARIABLE.sub(value, script)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


def run_step(
    name: str, params: dict[str, str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    step = next(s for s in task()["spec"]["steps"] if s["name"] == name)
    script = tmp_path / f"{name}.sh"
    script.write_text(substitute(step["script"], params, tmp_path))
    env = env or {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_check_step_passes_encrypted_and_fails_plain_images(
    registry: RegistryServer, tmp_path: Path
) -> None:
    _, config = write_provider_double(tmp_path / "provider")
    (tmp_path / "state").mkdir()
    env = {
        **os.environ,
        "OCICRYPT_KEYPROVIDER_CONFIG": str(config),
        "PROVIDER_STATE": str(tmp_path / "state"),
    }
    plain = f"docker://{registry.host}/app/plain:v1"
    enc = f"docker://{registry.host}/app/enc:v1"
    src = f"oci:{FIXTURE / 'plain-image'}:v1"
    tp = [sys.executable, "-m", "trustplane", "image"]
    # a plain copy: decrypting a plain image copies it unchanged
    done = subprocess.run(
        [*tp, "decrypt", src, plain, "--decryption-key", "provider:trustplane", "--plain-http"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [
            *tp,
            "encrypt",
            src,
            enc,
            "--encryption-key",
            "provider:trustplane:policy=region-eu",
            "--plain-http",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    params = {"tls-verify": "false"}
    ok = run_step("check", {**params, "destination": enc}, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{enc}: ok: all 2 layers are encrypted for trustplane"
    bad = run_step("check", {**params, "destination": plain}, tmp_path)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[-1] == (
        f"{plain}: refused: 2 of 2 layers are not encrypted for trustplane"
    )


SKOPEO = os.environ.get("TRUSTPLANE_SKOPEO")


@pytest.mark.skipif(
    not SKOPEO,
    reason="TRUSTPLANE_SKOPEO is not set: no skopeo >= 1.11 with ocicrypt key providers on this "
    "machine (Debian 12 ships 1.9.3, which cannot call them)",
)
def test_the_encrypt_step_with_a_real_skopeo(registry: RegistryServer, tmp_path: Path) -> None:
    """The encrypt step's script with a key-provider-capable skopeo; the provider is the test
    double of tests/imagekit.py installed as trustplane-keyprovider (the script, not the
    provider, is under test here)."""
    assert SKOPEO is not None
    script, _ = write_provider_double(tmp_path / "provider")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "skopeo").symlink_to(SKOPEO)
    (bin_dir / "trustplane-keyprovider").symlink_to(script)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "token").write_text("tp_pipeline_token\n")
    (tmp_path / "state").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "WORK": str(work),
        "OCICRYPT_KEYPROVIDER_CONFIG": str(work / "ocicrypt.conf"),
        "TRUSTPLANE_KEYPROVIDER_CONFIG": str(work / "keyprovider.toml"),
        "TOKEN_SOURCE": str(tmp_path / "token"),
        "HUB_CA": str(tmp_path / "ca.pem"),
        "PROVIDER_STATE": str(tmp_path / "state"),
        "_CONTAINERS_ROOTLESS_UID": "65534",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    dest = f"docker://{registry.host}/tekton/app:enc"
    params = {
        "source": f"oci:{FIXTURE / 'plain-image'}:v1",
        "destination": dest,
        "policy": "region-eu",
        "hub-url": "https://hub.example:8443",
        "tls-verify": "false",
    }
    done = run_step("encrypt", params, tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "image-digest").read_text().startswith("sha256:")
    assert (work / "pipeline.token").stat().st_mode & 0o777 == 0o600
    assert (work / "keyprovider.toml").read_text() == (
        f'[hub]\nurl = "https://hub.example:8443"\nca_file = "{tmp_path / "ca.pem"}"\n'
        f'token_file = "{work / "pipeline.token"}"\n'
    )
    assert run_step("check", params, tmp_path).returncode == 0
