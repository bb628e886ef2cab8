"""Evidence collection from the real shared logs, a fake /dev/mem TXT image, and absent sources."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent.config import EvidenceConfig
from nodeagent.evidence import (
    EvidenceUnavailable,
    _os_reason,
    collect_evidence,
    read_txt_log,
    read_uefi_log,
)
from tests.conftest import EVENTLOGS, REPO
from trustcore.wire import MissingEvidence

UEFI_LOG = EVENTLOGS / "tpm2-tools" / "event-arch-linux.bin"
TXT_IMAGE = EVENTLOGS / "intel-secl" / "txt_heap_info.bin"
TXT_LOG_SHA256 = "cd2dab6b1e605500a0783feeaa28ee631732d9bf25febc020c9287c7d412f05c"


def _cfg(tmp_path: Path, **kw: object) -> EvidenceConfig:
    uuid = tmp_path / "product_uuid"
    uuid.write_text("4C4C4544-0042-3510-8052-B4C04F564433\n")
    boot = tmp_path / "boot_id"
    boot.write_text("0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11\n")
    base = EvidenceConfig(
        uefi_log=UEFI_LOG,
        txt_memory=TXT_IMAGE,
        txt_registers=0,
        txt_heap_base_offset=0,
        txt_heap_size_offset=8,
        txt_log_pointer="heap-relative",
        dmi_uuid=uuid,
        boot_id=boot,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_uefi_log_is_the_file_bytes(tmp_path: Path) -> None:
    data = read_uefi_log(UEFI_LOG)
    assert data == UEFI_LOG.read_bytes()
    assert len(data) == UEFI_LOG.stat().st_size


def test_txt_log_from_fake_dev_mem_heap_image(tmp_path: Path) -> None:
    # txt_heap_eventlog.expected.json: the container is bytes [0x1114c, 0x1314c) of the image,
    # of which the last 6470 are unwritten: the records are its first 8192 - 6470 = 1722 bytes.
    log = read_txt_log(_cfg(tmp_path))
    assert len(log) == 1722
    assert log == TXT_IMAGE.read_bytes()[0x1114C : 0x1114C + 1722]
    container = (EVENTLOGS / "intel-secl" / "txt_heap_eventlog.bin").read_bytes()
    assert hashlib.sha256(container).hexdigest() == TXT_LOG_SHA256
    assert container.startswith(log)


def test_txt_physical_pointer_into_the_image_is_not_a_log(tmp_path: Path) -> None:
    # intel-secl's image records the pointer relative to the heap; read as physical it points
    # at heap bytes that are no Spec ID header, and the agent says so instead of sending them.
    with pytest.raises(EvidenceUnavailable) as info:
        read_txt_log(_cfg(tmp_path, txt_log_pointer="physical"))
    assert info.value.reason_id == "malformed"
    assert info.value.detail == "no Spec ID header at 0x1014c: not a TPM 2.0 TXT log"


def test_collect_everything_present(tmp_path: Path) -> None:
    ev = collect_evidence(_cfg(tmp_path))
    assert sorted(ev.eventlogs) == ["txt", "uefi"]
    assert ev.missing == ()
    assert ev.boot_id == "0b3a7a5e-7b1e-4d0c-9d38-6d2c1f7e9a11"
    assert ev.facts["dmi_uuid"] == "4c4c4544-0042-3510-8052-b4c04f564433"
    assert ev.facts["kernel"] == os.uname().release
    assert ev.facts["hostname"] == os.uname().nodename


def test_absent_sources_are_reported_not_faked(tmp_path: Path) -> None:
    zeros = tmp_path / "mem"
    zeros.write_bytes(bytes(4096))
    ev = collect_evidence(
        _cfg(
            tmp_path,
            uefi_log=tmp_path / "nope",
            txt_memory=zeros,
            dmi_uuid=tmp_path / "no-dmi",
        )
    )
    assert ev.eventlogs == {}
    assert ev.missing == (
        MissingEvidence("dmi_uuid", f"not_present: {tmp_path / 'no-dmi'} does not exist"),
        MissingEvidence("uefi", f"not_present: {tmp_path / 'nope'} does not exist"),
        MissingEvidence("txt", "not_present: TXT heap registers read 0x0/0x0: TXT is off"),
    )
    assert "dmi_uuid" not in ev.facts


def test_txt_disabled_and_no_dev_mem(tmp_path: Path) -> None:
    ev = collect_evidence(_cfg(tmp_path, txt=False))
    assert ev.missing == (MissingEvidence("txt", "disabled: evidence.txt is false in the config"),)
    ev = collect_evidence(_cfg(tmp_path, txt_memory=tmp_path / "mem"))
    assert ev.missing == (
        MissingEvidence("txt", f"not_present: {tmp_path / 'mem'} does not exist"),
    )


def test_txt_heap_too_large_and_truncated_memory(tmp_path: Path) -> None:
    ev = collect_evidence(_cfg(tmp_path, txt_heap_max_bytes=4096))
    assert ev.missing == (
        MissingEvidence("txt", "too_large: TXT heap of 1048576 bytes exceeds txt_heap_max_bytes"),
    )
    short = tmp_path / "short"
    short.write_bytes(TXT_IMAGE.read_bytes()[:0x2000])
    with pytest.raises(EvidenceUnavailable) as info:
        read_txt_log(_cfg(tmp_path, txt_memory=short))
    assert info.value.reason_id == "unreadable"
    assert info.value.detail == f"{short}: short read at 0x2000"


def test_directory_as_log_is_unreadable(tmp_path: Path) -> None:
    ev = collect_evidence(_cfg(tmp_path, uefi_log=tmp_path, txt=False))
    assert ev.missing[0] == MissingEvidence("uefi", f"unreadable: {tmp_path}: Is a directory")


def test_eperm_means_lockdown_and_eacces_permission() -> None:
    mem = Path("/dev/mem")
    locked = _os_reason("txt", mem, OSError(errno.EPERM, "Operation not permitted"))
    assert (locked.reason_id, locked.detail) == (
        "locked_down",
        "/dev/mem: operation not permitted (kernel lockdown or policy)",
    )
    denied = _os_reason("txt", mem, OSError(errno.EACCES, "Permission denied"))
    assert denied.reason_id == "permission_denied"


def test_permission_denied_without_dac_override(tmp_path: Path) -> None:
    """Collect as root without CAP_DAC_OVERRIDE against another user's 0600 file: real EACCES."""
    assert os.geteuid() == 0, "this test drops capabilities and needs root (CI runs as root)"
    secret = tmp_path / "bios"
    secret.write_bytes(UEFI_LOG.read_bytes())
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from nodeagent.evidence import collect_evidence\n"
        "from nodeagent.config import EvidenceConfig\n"
        "ev = collect_evidence(EvidenceConfig(uefi_log=Path(sys.argv[1]), txt=False))\n"
        "print(json.dumps([m.to_json() for m in ev.missing]))\n"
    )
    drop = "-dac_override,-dac_read_search"
    setpriv = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]
    out = subprocess.run(
        [*setpriv, sys.executable, "-c", code, str(secret)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    missing = json.loads(out.stdout)
    assert {"source": "uefi", "reason": f"permission_denied: {secret}: no permission to read"} in (
        missing
    )


def test_txt_heap_garbage_is_malformed_with_trustcore_reason(tmp_path: Path) -> None:
    image = bytearray(TXT_IMAGE.read_bytes()[:0x3000])
    image[8:16] = (0x1000).to_bytes(8, "little")  # heap size 4 KiB
    image[0x1000:0x1008] = (0xFFFF).to_bytes(8, "little")  # BiosData larger than the heap
    mem = tmp_path / "mem"
    mem.write_bytes(bytes(image))
    with pytest.raises(EvidenceUnavailable) as info:
        read_txt_log(_cfg(tmp_path, txt_memory=mem))
    assert info.value.reason_id == "malformed"
    assert info.value.detail.startswith("TXT heap: txtheap.bad_table: ")


def test_systemd_credential_of_one_newline_means_absent(tmp_path: Path) -> None:
    """The unit passes an absent log or DMI UUID as a credential holding one newline."""
    log = tmp_path / "uefi-eventlog"
    log.write_text("\n")
    uuid = tmp_path / "dmi-product-uuid"
    uuid.write_text("\n")
    ev = collect_evidence(_cfg(tmp_path, uefi_log=log, dmi_uuid=uuid, txt=False))
    assert ev.eventlogs == {}
    assert "dmi_uuid" not in ev.facts
    assert ev.missing[:2] == (
        MissingEvidence("dmi_uuid", f"not_present: {uuid} is empty"),
        MissingEvidence("uefi", f"not_present: {log} is empty"),
    )
