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
    assert volumes["pipeline-token"]["secret"]["defaultMode"] == 0o400
    assert mounts["pipeline-token"]["readOnly"] is True
    assert all("valueFrom" not in e for e in spec["stepTemplate"]["env"])
    encrypt = spec["steps"][0]["script"]
    assert '--encryption-key "provider:trustplane:policy=$(params.policy)"' in encrypt
    assert "skopeo copy --policy /work/policy.json" in encrypt
    env = {e["name"]: e["value"] for e in spec["stepTemplate"]["env"]}
    assert env["OCICRYPT_KEYPROVIDER_CONFIG"] == "/work/ocicrypt.conf"
    assert 'trustplane image check $plain "$(params.destination)"' in spec["steps"][1]["script"]


def substitute(script: str, params: dict[str, str], results: Path) -> str:
    def value(match: re.Match[str]) -> str:
        kind, name, _ = match.groups()
        return str(results / name) if kind == "results" else params[name]

    return VARIABLE.sub(value, script)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


def run_step(name: str, params: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    step = next(s for s in task()["spec"]["steps"] if s["name"] == name)
    script = tmp_path / f"{name}.sh"
    script.write_text(substitute(step["script"], params, tmp_path))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
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
