"""TpmDevice.properties against tpm2-tools' reading of the same swtpm (an independent oracle)."""

from __future__ import annotations

import re
import subprocess

from nodeagent.tpm import TpmDevice
from trustplane.swtpm import Swtpm


def getcap_raw(tcti: str) -> dict[str, int]:
    out = subprocess.run(
        ["tpm2_getcap", "-T", tcti, "properties-fixed"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {
        name: int(raw, 16)
        for name, raw in re.findall(r"^(TPM2_PT_\w+):\s*\n\s*raw: (0x[0-9A-Fa-f]+)", out, re.M)
    }


def test_properties_match_tpm2_getcap(swtpm: Swtpm) -> None:
    raw = getcap_raw(swtpm.tcti)
    with TpmDevice(swtpm.tcti) as device:
        props = device.properties()
    assert (
        props.manufacturer == raw["TPM2_PT_MANUFACTURER"].to_bytes(4, "big").rstrip(b"\0").decode()
    )
    assert props.manufacturer == "IBM"  # swtpm (libtpms) reports IBM's vendor id
    fw1, fw2 = raw["TPM2_PT_FIRMWARE_VERSION_1"], raw["TPM2_PT_FIRMWARE_VERSION_2"]
    assert props.firmware_version == f"{fw1 >> 16}.{fw1 & 0xFFFF}.{fw2 >> 16}.{fw2 & 0xFFFF}"
    vendor = b"".join(
        raw.get(f"TPM2_PT_VENDOR_STRING_{i}", 0).to_bytes(4, "big") for i in range(1, 5)
    )
    assert props.vendor == " ".join(vendor.replace(b"\0", b"").decode().split())
    assert props.vendor == "SW TPM"
    rev = raw["TPM2_PT_REVISION"]
    assert props.spec_revision == f"{rev // 100}.{rev % 100:02d}"
