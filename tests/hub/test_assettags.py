"""Asset tags end to end: the hub issues a tag certificate, a real swtpm holds its SHA-384 in
the asset-tag NV index, each report carries the AK's NV_Certify of it, and the hub checks the
chain (reason ids ``assettag.missing``, ``.mismatch``, ``.certificate_invalid``) before the
flavors see the tags."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hub.cli import main as cli_main
from hub.jws import verify_jws
from hub.pki import issue_tag_certificate, make_ca
from tests.hub.harness import Agent, FakeClock, HubProcess, Response, make_state
from trustcore.assettag import (
    ASSET_TAG_NV_ATTRIBUTES,
    ASSET_TAG_NV_INDEX,
    ASSET_TAG_NV_SIZE,
    TAG_EXTENSION_OID,
    decode_tags_extension,
)
from trustcore.wire import ReportResult
from trustplane.swtpm import SwtpmFactory

TAGS = {"region": "EU", "rack": "7"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(make_state(tmp_path), FakeClock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def tagged(hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path: Path) -> Iterator[Agent]:
    """An agent bound to ``hub`` whose TPM has the asset-tag NV index defined (not written)."""
    tpm = swtpm_factory.start()
    agent = Agent(tpm, tmp_path / "agent")
    try:
        agent.enroll_direct(hub)
        agent.device.nv_define(ASSET_TAG_NV_INDEX, ASSET_TAG_NV_SIZE, ASSET_TAG_NV_ATTRIBUTES)
        yield agent
    finally:
        agent.close()
        tpm.stop()


def result(resp: Response) -> ReportResult:
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def attest(hub: HubProcess, agent: Agent, certificate: bytes | None) -> ReportResult:
    nonce = agent.challenge(hub)
    return result(agent.send(hub, agent.build_report(nonce, asset_tag_certificate=certificate)))


def put_tags(hub: HubProcess, host_id: str, tags: dict[str, str]) -> Response:
    admin = hub.client(token=hub.token("admin", "ops"))
    return admin.request("PUT", f"/v1/hosts/{host_id}/tags", {"tags": tags})


def write_nv(agent: Agent, certificate: bytes) -> None:
    agent.device.nv_write(ASSET_TAG_NV_INDEX, hashlib.sha384(certificate).digest())


def test_tagged_host_is_trusted_with_the_tags_its_tpm_vouches_for(
    hub: HubProcess, tagged: Agent
) -> None:
    untagged = attest(hub, tagged, None)
    assert (untagged.verdict, untagged.tag_certificate) == ("trusted", None)

    resp = put_tags(hub, tagged.host_id, TAGS)
    assert resp.status == 200, resp.body
    der = base64.b64decode(resp.body["certificate"])
    assert resp.body["sha384"] == hashlib.sha384(der).hexdigest()
    cert = x509.load_der_x509_certificate(der)
    cert.verify_directly_issued_by(hub.state.keys.tag_ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == tagged.host_id
    ext = cert.extensions.get_extension_for_oid(TAG_EXTENSION_OID)
    assert not ext.critical
    assert decode_tags_extension(ext.value.value) == TAGS  # type: ignore[attr-defined]

    # the report after the tags were set has no evidence: the hub hands over the certificate
    missing = attest(hub, tagged, None)
    assert (missing.verdict, missing.reasons) == ("untrusted", ("assettag.missing",))
    assert missing.tag_certificate == der

    write_nv(tagged, der)
    good = attest(hub, tagged, der)
    assert (good.verdict, good.reasons, good.tag_certificate) == ("trusted", (), None)
    payload = verify_jws(good.trust_report, hub.state.keys.jws_key.public_key())
    assert payload["asset_tags"] == TAGS

    # the agent's own endpoint gives the same certificate
    fetched = tagged.mtls(hub).post("/v1/tags", {})
    assert fetched.status == 200, fetched.body
    assert (fetched.body["certificate"], fetched.body["tags"]) == (resp.body["certificate"], TAGS)


def test_nv_contents_changed_is_a_mismatch(hub: HubProcess, tagged: Agent) -> None:
    der = base64.b64decode(put_tags(hub, tagged.host_id, TAGS).body["certificate"])
    tagged.device.nv_write(ASSET_TAG_NV_INDEX, hashlib.sha384(der + b"x").digest())
    res = attest(hub, tagged, der)
    assert (res.verdict, res.reasons) == ("untrusted", ("assettag.mismatch",))
    assert res.tag_certificate is None  # it carried the current certificate


def test_superseded_certificate_is_a_mismatch(hub: HubProcess, tagged: Agent) -> None:
    old = base64.b64decode(put_tags(hub, tagged.host_id, TAGS).body["certificate"])
    new = base64.b64decode(put_tags(hub, tagged.host_id, {"region": "US"}).body["certificate"])
    write_nv(tagged, old)
    res = attest(hub, tagged, old)
    assert (res.verdict, res.reasons) == ("untrusted", ("assettag.mismatch",))
    assert res.tag_certificate == new


def test_certificate_from_another_ca_is_invalid(hub: HubProcess, tagged: Agent) -> None:
    put_tags(hub, tagged.host_id, TAGS)
    rogue_ca = make_ca("trustplane asset-tag CA", hub.clock())
    forged = issue_tag_certificate(rogue_ca, tagged.host_id, TAGS, hub.clock()).public_bytes(
        serialization.Encoding.DER
    )
    write_nv(tagged, forged)
    res = attest(hub, tagged, forged)
    assert (res.verdict, res.reasons) == ("untrusted", ("assettag.certificate_invalid",))


def test_certificate_for_another_host_is_invalid(hub: HubProcess, tagged: Agent) -> None:
    put_tags(hub, tagged.host_id, TAGS)
    other = issue_tag_certificate(hub.state.keys.tag_ca, "ab" * 32, TAGS, hub.clock())
    der = other.public_bytes(serialization.Encoding.DER)
    write_nv(tagged, der)
    res = attest(hub, tagged, der)
    assert (res.verdict, res.reasons) == ("untrusted", ("assettag.certificate_invalid",))


def test_flavor_asset_tag_rule_sees_the_verified_tags(hub: HubProcess, tagged: Agent) -> None:
    admin = hub.client(token=hub.token("admin", "ops"))
    for fid, region in (("eu-only", "EU"), ("us-only", "US")):
        doc = {
            "schema": "trustplane.flavor/v1",
            "id": fid,
            "name": fid,
            "part": "asset_tag",
            "bank": "sha256",
            "pcrs": [],
            "rules": [{"rule": "asset_tag_matches"}],
            "asset_tags": {"region": region},
        }
        assert admin.request("PUT", f"/v1/flavors/{fid}", doc).status == 200
    der = base64.b64decode(put_tags(hub, tagged.host_id, TAGS).body["certificate"])
    write_nv(tagged, der)
    outcomes = {}
    for fid in ("eu-only", "us-only"):
        resp = admin.request("PUT", f"/v1/hosts/{tagged.host_id}/flavors", {"flavors": [fid]})
        assert resp.status == 200, resp.body
        res = attest(hub, tagged, der)
        outcomes[fid] = (res.verdict, res.reasons)
    # the default group also requires a platform flavor; only the tag rule differs
    assert outcomes["us-only"] == ("untrusted", ("assettag.mismatch", "flavor.platform.missing"))
    assert outcomes["eu-only"] == ("untrusted", ("flavor.platform.missing",))


def test_put_tags_refuses_bad_tags_and_unknown_hosts(hub: HubProcess, tagged: Agent) -> None:
    bad = put_tags(hub, tagged.host_id, {"Region": "EU"})
    assert (bad.status, bad.code) == (400, "assettag.tags_invalid")
    unknown = put_tags(hub, "cd" * 32, TAGS)
    assert (unknown.status, unknown.code) == (404, "host.unknown")
    viewer = hub.client(token=hub.token("viewer"))
    resp = viewer.request("PUT", f"/v1/hosts/{tagged.host_id}/tags", {"tags": TAGS})
    assert (resp.status, resp.code) == (403, "auth.forbidden")
    cleared = put_tags(hub, tagged.host_id, {})
    assert (cleared.status, cleared.body["certificate"]) == (200, None)
    assert attest(hub, tagged, None).verdict == "trusted"


def test_cli_tags_set_show_clear(
    hub: HubProcess, tagged: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(tmp_path / "none.toml"), "--state-dir", str(hub.config.state.dir)]
    assert cli_main(["tags", "set", *cfg, tagged.host_id, "region=EU", "rack=7"]) == 0
    line = capsys.readouterr().out.strip()
    assert cli_main(["tags", "show", *cfg, tagged.host_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    der = base64.b64decode(shown["certificate"])
    assert line == f"{tagged.host_id}\t{hashlib.sha384(der).hexdigest()}"
    assert shown["tags"] == TAGS
    write_nv(tagged, der)
    assert attest(hub, tagged, der).verdict == "trusted"
    assert cli_main(["tags", "set", *cfg, tagged.host_id, "region"]) == 2
    assert cli_main(["tags", "set", *cfg, tagged.host_id, "Bad=x"]) == 2
    assert cli_main(["tags", "set", *cfg, "ef" * 32, "region=EU"]) == 1
    assert cli_main(["tags", "clear", *cfg, tagged.host_id]) == 0
    assert attest(hub, tagged, None).verdict == "trusted"
    actions = [r["action"] for r in hub.call(hub.state.store.list_audit())]
    assert actions.count("host.tags") == 2
