"""``trustplane-hub flavor``: import (event log, document, a host's verified report), list, show,
delete, assign; exact outputs, exit codes 0/1/2, audited writes.

Expected PCR values come from the corpus' expected.json (computed by tpm2-tools), rule counts
from the template file as written (platform 14 PCR rules + eventlog_integrity, host_unique 4,
os 4). The ``--from-host`` tests use the real hub and a swtpm booted from the same log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import flavorcli
from hub.cli import main
from hub.store import Store
from tests.conftest import EVENTLOGS, REPO
from tests.hub.harness import Agent, FakeClock, HubProcess, make_state
from trustcore.wire import EventLogEvidence, ReportResult
from trustplane.swtpm import SwtpmFactory
from trustplane.tpmboot import boot_from_eventlog

LOG = EVENTLOGS / "guard-oss-evidence" / "test-before.bin"
EXPECTED = json.loads(LOG.with_name("test-before.expected.json").read_text())["expected_pcrs"]
PCR4 = EXPECTED["sha256"]["4"].lower()
LOG_SHA256 = hashlib.sha256(LOG.read_bytes()).hexdigest()
EXAMPLE = REPO / "firmware_measurements" / "examples" / "guard-test-before.platform.json"


def stored_lines(name: str) -> list[str]:
    return [
        f"stored {name}.platform\tplatform\tPCR 0,1,2,3,4,5,6,7\t15 rules",
        f"stored {name}.host_unique\thost_unique\tPCR 1,5\t4 rules",
        f"stored {name}.os\tos\tPCR 8,9\t4 rules",
    ]


def cli(state: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    before, action, *rest = args
    code = main(
        [
            before,
            action,
            "--config",
            str(state.parent / "none.toml"),
            "--state-dir",
            str(state),
            *rest,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def audit_actions(state: Path) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        store = await Store.open(state / "hub.db")
        try:
            return [(r["action"], r["subject"]) for r in await store.list_audit()]
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "state"
    code = main(["init", "--config", str(tmp_path / "none.toml"), "--state-dir", str(path)])
    assert code == 0
    capsys.readouterr()
    return path


def test_import_from_eventlog_then_list_and_show(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(state, capsys, "flavor", "import", "--from-eventlog", str(LOG))
    assert (code, out.splitlines()) == (0, stored_lines("test-before"))
    code, out, _ = cli(state, capsys, "flavor", "list")
    assert (code, out.splitlines()) == (
        0,
        [
            "test-before.host_unique\thost_unique\tPCR 1,5\t-",
            "test-before.os\tos\tPCR 8,9\t-",
            "test-before.platform\tplatform\tPCR 0,1,2,3,4,5,6,7\t-",
        ],
    )
    code, out, _ = cli(state, capsys, "flavor", "show", "test-before.platform")
    assert code == 0
    lines = out.splitlines()
    assert lines[:5] == [
        "id: test-before.platform",
        "part: platform",
        f"source: test-before.bin sha256:{LOG_SHA256}",
        "template: uefi-secure-boot",
        "hosts: -",
    ]
    assert any(line.startswith(f"PCR 4: {PCR4} (") for line in lines)
    assert lines[-1] == "rule: eventlog_integrity"
    code, out, _ = cli(state, capsys, "flavor", "show", "test-before.os", "--json")
    doc = json.loads(out)
    values = {p["index"]: p["value"] for p in doc["pcrs"]}
    assert values == {8: EXPECTED["sha256"]["8"].lower(), 9: EXPECTED["sha256"]["9"].lower()}
    assert [a for a in audit_actions(state) if a[0] == "flavor.import"] == [
        ("flavor.import", "test-before.platform"),
        ("flavor.import", "test-before.host_unique"),
        ("flavor.import", "test-before.os"),
    ]


def test_import_document_and_delete(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(state, capsys, "flavor", "import", str(EXAMPLE))
    assert (code, out) == (
        0,
        "stored guard-test-before.platform\tplatform\tPCR 0,1,2,3,4,5,6,7\t15 rules\n",
    )
    code, out, _ = cli(state, capsys, "flavor", "show", "guard-test-before.platform", "--json")
    assert json.loads(out) == json.loads(EXAMPLE.read_text())
    code, out, _ = cli(state, capsys, "flavor", "delete", "guard-test-before.platform")
    assert (code, out) == (0, "deleted guard-test-before.platform\n")
    assert cli(state, capsys, "flavor", "list")[:2] == (0, "")
    assert audit_actions(state)[-1] == ("flavor.delete", "guard-test-before.platform")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("show", "nope"), 1, "trustplane-hub: no such flavor: nope\n"),
        (("delete", "nope"), 1, "trustplane-hub: no such flavor: nope\n"),
        (("assign", "nohost", "x"), 1, "trustplane-hub: no such host: nohost\n"),
        (("import", "--from-host", "nohost"), 1, "trustplane-hub: no such host: nohost\n"),
        (
            ("import", "--from-eventlog", str(LOG), "--template", "nope"),
            2,
            (
                "trustplane-hub: no template 'nope': use uefi-secure-boot, txt-tboot or a template "
                "file\n"
            ),
        ),
        (
            ("import", "--from-eventlog", str(LOG), "--name", "bad name"),
            2,
            (
                f"trustplane-hub: {LOG}: name: not an identifier (1-128 of A-Z a-z 0-9 . _ : -): "
                "'bad name'\n"
            ),
        ),
    ],
)
def test_refusals(
    state: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    assert cli(state, capsys, "flavor", *args) == (code, "", message)


def test_files_that_are_neither_logs_nor_flavors_exit_2(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"schema": "nope"}')
    code, out, err = cli(state, capsys, "flavor", "import", str(junk))
    assert (code, out) == (2, "")
    assert err.startswith(f"trustplane-hub: {junk}: not a flavor document: ")
    code, out, err = cli(state, capsys, "flavor", "import", "--from-eventlog", str(junk))
    assert (code, out) == (2, "")
    assert err.startswith(f"trustplane-hub: {junk}: ")
    assert [a for a in audit_actions(state) if a[0] != "hub.init"] == []


# --- from a host's verified report, on the real hub ------------------------------------------


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("flavor-cli-hub")
    process = HubProcess(make_state(tmp, attestation={"require_flavor": True}), FakeClock())
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def host(
    hub: HubProcess, swtpm_factory: SwtpmFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    """A host whose TPM booted test-before.bin, enrolled as node ``direct``."""
    tpm = swtpm_factory.start()
    agent = Agent(tpm, tmp_path_factory.mktemp("flavor-cli-host"))
    try:
        boot_from_eventlog(tpm, LOG)
        agent.enroll_direct(hub)
        yield agent
    finally:
        agent.close()
        tpm.stop()


def attest(hub: HubProcess, agent: Agent) -> ReportResult:
    data = LOG.read_bytes()
    logs = {"uefi": EventLogEvidence(hashlib.sha256(data).digest(), data)}
    resp = agent.attest(hub, eventlogs=logs, pcrs=tuple(range(10)))
    assert resp.status == 200, resp.body
    return ReportResult.from_json(resp.body)


def documents(state: Path, capsys: pytest.CaptureFixture[str], *ids: str) -> list[Any]:
    out = []
    for flavor_id in ids:
        code, text, _ = cli(state, capsys, "flavor", "show", flavor_id, "--json")
        assert code == 0
        doc = json.loads(text)
        doc["meta"].pop("source")
        doc["id"] = doc["name"] = ""
        out.append(doc)
    return out


def test_from_host_assign_and_delete(
    hub: HubProcess, host: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    state = hub.config.state.dir
    code, _, err = cli(state, capsys, "flavor", "import", "--from-host", "direct")
    assert (code, err) == (1, f"trustplane-hub: host {host.host_id} has no verified report yet\n")
    assert attest(hub, host).reasons == ("flavor.none_assigned",)

    code, out, _ = cli(state, capsys, "flavor", "import", "--from-host", "direct")
    assert (code, out.splitlines()) == (0, stored_lines("direct"))
    code, out, _ = cli(state, capsys, "flavor", "import", "--from-eventlog", str(LOG))
    assert code == 0
    # PCR values from the verified quote and events from the replayed log equal the file's
    assert documents(state, capsys, "direct.platform", "direct.os") == documents(
        state, capsys, "test-before.platform", "test-before.os"
    )
    code, out, _ = cli(state, capsys, "flavor", "show", "direct.os")
    assert out.splitlines()[2].startswith(f"source: host {host.host_id} report of 20")

    code, out, _ = cli(state, capsys, "flavor", "assign", "direct", "direct.platform", "direct.os")
    assert (code, out) == (0, f'{host.host_id}\tdirect\t["direct.platform", "direct.os"]\n')
    assert (attest(hub, host).verdict, attest(hub, host).reasons) == ("trusted", ())

    code, out, err = cli(state, capsys, "flavor", "delete", "direct.os")
    assert (code, out, err) == (
        1,
        "",
        "trustplane-hub: flavor direct.os is assigned to direct; reassign them first\n",
    )
    code, out, _ = cli(state, capsys, "flavor", "list")
    assert "direct.os\tos\tPCR 8,9\tdirect" in out.splitlines()
    assert cli(state, capsys, "flavor", "assign", host.host_id[:10], "direct.platform")[0] == 0
    assert cli(state, capsys, "flavor", "delete", "direct.os")[:2] == (0, "deleted direct.os\n")
    code, _, err = cli(state, capsys, "flavor", "assign", "direct", "direct.os")
    assert (code, err) == (1, "trustplane-hub: no such flavors: direct.os\n")
    assert [a for a in audit_actions(state) if a[0] == "host.flavors"] == [
        ("host.flavors", host.host_id),
        ("host.flavors", host.host_id),
    ]


def test_host_groups_from_the_command_line(
    hub: HubProcess, host: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    state = hub.config.state.dir
    code, _, _ = cli(state, capsys, "flavor", "import", "--from-eventlog", str(LOG), "--name", "g")
    assert code == 0
    # the host has no flavors of its own: only its group's count
    code, _, err = cli(state, capsys, "flavor", "assign", "direct")
    assert (code, err) == (
        2,
        "trustplane-hub: flavor assign needs HOST and at least one flavor ID\n",
    )
    hub.call(hub.state.store.set_host_flavors(host.host_id, []))
    assert attest(hub, host).reasons == ("flavor.none_assigned",)

    code, out, _ = cli(state, capsys, "flavor", "assign", "--group", "rack-7", "g.platform", "g.os")
    assert (code, out) == (0, 'group:rack-7\t["g.platform", "g.os"]\n')
    code, out, _ = cli(state, capsys, "hosts", "group", "direct", "rack-7")
    assert (code, out) == (0, f"{host.host_id}\track-7\n")
    assert (attest(hub, host).verdict, attest(hub, host).reasons) == ("trusted", ())
    code, out, _ = cli(state, capsys, "flavor", "list")
    assert "g.os\tos\tPCR 8,9\tgroup:rack-7" in out.splitlines()
    code, out, err = cli(state, capsys, "flavor", "delete", "g.os")
    assert (code, err) == (
        1,
        "trustplane-hub: flavor g.os is assigned to group:rack-7; reassign them first\n",
    )

    code, out, _ = cli(state, capsys, "hosts", "group", "direct", "--none")
    assert (code, out) == (0, f"{host.host_id}\t-\n")
    assert attest(hub, host).reasons == ("flavor.none_assigned",)

    code, _, err = cli(state, capsys, "hosts", "group", "direct", "Rack 7")
    assert (code, err) == (
        2,
        "trustplane-hub: group name 'Rack 7' is not 1-63 of [a-z0-9._-] with alphanumeric ends\n",
    )
    code, _, err = cli(state, capsys, "hosts", "group", "nosuch", "rack-7")
    assert (code, err) == (1, "trustplane-hub: no such host: nosuch\n")
    code, _, err = cli(state, capsys, "flavor", "assign", "--group", "rack-7", "nope")
    assert (code, err) == (1, "trustplane-hub: no such flavors: nope\n")
    code, _, err = cli(state, capsys, "flavor", "assign", "--group=-bad", "g.os")
    assert code == 2
    actions = [a for a in audit_actions(state) if a[0] in ("host.group", "group.flavors")]
    assert actions == [
        ("group.flavors", "rack-7"),
        ("host.group", host.host_id),
        ("host.group", host.host_id),
    ]


def test_built_in_template_names_resolve_where_the_rpm_installs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an installed hub has no checkout: the names resolve from /usr/share/trustplane/templates
    assert flavorcli.TEMPLATE_DIRS[1] == Path("/usr/share/trustplane/templates")
    installed = tmp_path / "share"
    installed.mkdir()
    source = REPO / "firmware_measurements" / "templates" / "txt-tboot.json"
    (installed / "txt-tboot.json").write_bytes(source.read_bytes())
    monkeypatch.setattr(flavorcli, "TEMPLATE_DIRS", (tmp_path / "no-checkout", installed))
    assert flavorcli.load_template("txt-tboot").name == "txt-tboot"
    with pytest.raises(flavorcli.FlavorInputError, match="no template 'uefi-secure-boot'"):
        flavorcli.load_template("uefi-secure-boot")
