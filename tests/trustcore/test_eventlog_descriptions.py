"""Event data decoding: hand-built UEFI structures with the texts the specs define for them.

Expected strings follow the UEFI specification's device-path text notation and the TCG PC
Client Platform Firmware Profile's event data layouts; inputs are built here byte by byte.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import EVENTLOGS, expected_logs
from trustcore.eventlog import (
    describe_event_data,
    event_type_name,
    parse_eventlog,
    parse_spec_id_event,
)

GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURITY_DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SHIM = "605dab50-e046-4300-abb6-3dd810dd8b23"
MICROSOFT = "77fa9abd-0359-4d32-bd60-28f4e78f784b"
X509_TYPE = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
SHA256_TYPE = "c1c41626-504c-4092-aca9-41f936934328"
PART = "3cb9643c-6c08-4fe5-852d-17e1ae701158"

EV_POST_CODE = 0x1
EV_NO_ACTION = 0x3
EV_SEPARATOR = 0x4
EV_EVENT_TAG = 0x6
EV_S_CRTM_VERSION = 0x8
EV_IPL = 0xD
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_VARIABLE_BOOT = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_GPT_EVENT = 0x80000006
EV_EFI_ACTION = 0x80000007
EV_EFI_HANDOFF_TABLES = 0x80000009
EV_EFI_VARIABLE_AUTHORITY = 0x800000E0


def guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def ucs2(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def node(ntype: int, sub: int, body: bytes) -> bytes:
    return struct.pack("<BBH", ntype, sub, 4 + len(body)) + body


PCI_ROOT = node(2, 1, struct.pack("<II", 0x0A0341D0, 0))
PCI_1F_2 = node(1, 1, bytes([2, 0x1F]))
SATA = node(3, 18, struct.pack("<HHH", 0, 0xFFFF, 0))
HD1 = node(4, 1, struct.pack("<IQQ", 1, 0x800, 0x64000) + guid(PART) + bytes([2, 2]))
END = node(0x7F, 0xFF, b"")
HD1_TEXT = f"HD(1,GPT,{PART},0x800,0x64000)"


def file_node(path: str) -> bytes:
    return node(4, 4, ucs2(path))


def variable(guid_text: str, name: str, value: bytes) -> bytes:
    return (
        guid(guid_text)
        + struct.pack("<QQ", len(name), len(value))
        + name.encode("utf-16-le")
        + value
    )


def load_option(desc: str, path: bytes, attributes: int = 1) -> bytes:
    return struct.pack("<IH", attributes, len(path)) + ucs2(desc) + path


def signature_list(sig_type: str, entries: list[bytes]) -> bytes:
    size = 16 + len(entries[0])
    body = b"".join(guid(MICROSOFT) + e for e in entries)
    return guid(sig_type) + struct.pack("<III", 28 + len(body), 0, size) + body


def certificate(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


CASES: dict[str, tuple[int, bytes, str]] = {
    "Boot#### load option": (
        EV_EFI_VARIABLE_BOOT,
        variable(
            GLOBAL,
            "Boot0001",
            load_option("Fedora", HD1 + file_node(r"\EFI\fedora\shimx64.efi") + END),
        ),
        f'Boot0001 (EFI_GLOBAL_VARIABLE): "Fedora" {HD1_TEXT}/\\EFI\\fedora\\shimx64.efi',
    ),
    "inactive load option": (
        EV_EFI_VARIABLE_BOOT,
        variable(GLOBAL, "Boot0002", load_option("Shell", PCI_ROOT + PCI_1F_2 + END, attributes=0)),
        'Boot0002 (EFI_GLOBAL_VARIABLE): "Shell" (inactive) PciRoot(0x0)/Pci(0x1f,0x2)',
    ),
    "BootOrder": (
        EV_EFI_VARIABLE_BOOT,
        variable(GLOBAL, "BootOrder", struct.pack("<3H", 1, 0, 0x1A)),
        "BootOrder (EFI_GLOBAL_VARIABLE): 0001, 0000, 001A",
    ),
    "SecureBoot": (
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        variable(GLOBAL, "SecureBoot", b"\x01"),
        "SecureBoot (EFI_GLOBAL_VARIABLE): 01",
    ),
    "empty PK": (
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        variable(GLOBAL, "PK", b""),
        "PK (EFI_GLOBAL_VARIABLE): (empty)",
    ),
    "db with two certificates": (
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        variable(SECURITY_DB, "db", signature_list(X509_TYPE, [b"A" * 40, b"B" * 40])),
        "db (EFI_IMAGE_SECURITY_DATABASE): 2 X509 certificates",
    ),
    "dbx with hashes and a certificate": (
        EV_EFI_VARIABLE_DRIVER_CONFIG,
        variable(
            SECURITY_DB,
            "dbx",
            signature_list(SHA256_TYPE, [bytes(32)] * 3) + signature_list(X509_TYPE, [b"C" * 50]),
        ),
        "dbx (EFI_IMAGE_SECURITY_DATABASE): 3 SHA256 hashes, 1 X509 certificate",
    ),
    "shim's SbatLevel": (
        EV_EFI_VARIABLE_AUTHORITY,
        variable(SHIM, "SbatLevel", b"sbat,1,2021030218\n"),
        "SbatLevel (SHIM_LOCK): sbat,1,2021030218\\n",
    ),
    "image load with a file path": (
        EV_EFI_BOOT_SERVICES_APPLICATION,
        struct.pack("<QQQ", 0x7C5CF018, 1024, 0)
        + struct.pack(
            "<Q", len(PCI_ROOT + PCI_1F_2 + SATA + HD1 + file_node(r"\EFI\BOOT\BOOTX64.EFI") + END)
        )
        + PCI_ROOT
        + PCI_1F_2
        + SATA
        + HD1
        + file_node(r"\EFI\BOOT\BOOTX64.EFI")
        + END,
        f"PciRoot(0x0)/Pci(0x1f,0x2)/Sata(0x0,0xffff,0x0)/{HD1_TEXT}/\\EFI\\BOOT\\BOOTX64.EFI",
    ),
    "image load from a firmware volume": (
        EV_EFI_BOOT_SERVICES_APPLICATION,
        struct.pack("<QQQQ", 0x1000, 64, 0, 44)
        + node(4, 7, guid(PART))
        + node(4, 6, guid(GLOBAL))
        + END,
        f"Fv({PART})/FvFile({GLOBAL})",
    ),
    "image load without a device path": (
        EV_EFI_BOOT_SERVICES_APPLICATION,
        struct.pack("<QQQQ", 0x7C5CF018, 1024, 0, 0),
        "image at 0x7c5cf018, 1024 bytes",
    ),
    "device path with a broken tail": (
        EV_EFI_BOOT_SERVICES_APPLICATION,
        struct.pack("<QQQQ", 0x1000, 64, 0, len(PCI_ROOT) + 4) + PCI_ROOT + bytes(4),
        "PciRoot(0x0)/...",
    ),
    "network boot option": (
        EV_EFI_VARIABLE_BOOT,
        variable(
            GLOBAL,
            "Boot0004",
            load_option(
                "PXE",
                PCI_ROOT
                + node(1, 1, bytes([0, 3]))
                + node(3, 11, bytes.fromhex("525400070301") + bytes(26) + b"\x01")
                + END,
            ),
        ),
        'Boot0004 (EFI_GLOBAL_VARIABLE): "PXE" PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400070301,0x1)',
    ),
    "S-CRTM version in UCS-2": (EV_S_CRTM_VERSION, ucs2("1.0"), "1.0"),
    "separator": (EV_SEPARATOR, bytes(4), "0x00000000"),
    "error separator": (EV_SEPARATOR, b"\xff" * 4, "0xffffffff (error)"),
    "EFI action": (
        EV_EFI_ACTION,
        b"Calling EFI Application from Boot Option",
        "Calling EFI Application from Boot Option",
    ),
    "POST code text": (EV_POST_CODE, b"ACPI DATA", "ACPI DATA"),
    "POST code blob": (
        EV_POST_CODE,
        struct.pack("<QQ", 0xFFA20000, 5111808),
        "firmware blob at 0xffa20000, 5111808 bytes",
    ),
    "StartupLocality": (EV_NO_ACTION, b"StartupLocality\0\x03", "StartupLocality 3"),
    "H-CRTM component measurement": (
        EV_NO_ACTION,
        b"H-CRTM CompMeas\0" + bytes([4]) + b"ACM!" + bytes([0]) + struct.pack("<H", 2) + b"hi",
        "H-CRTM CompMeas (26 bytes)",
    ),
    "IPL in UCS-2": (EV_IPL, ucs2("initrd=\\initrd.img quiet"), "initrd=\\initrd.img quiet"),
    "tagged event": (
        EV_EVENT_TAG,
        struct.pack("<II", 0x8F3B22ED, 14) + ucs2("initrd"),
        "tag 0x8f3b22ed: initrd",
    ),
    "GPT": (
        EV_EFI_GPT_EVENT,
        b"EFI PART"
        + struct.pack("<IIII", 0x10000, 92, 0, 0)
        + struct.pack("<QQQQ", 1, 0xFFFF, 34, 0xFFDE)
        + guid(PART)
        + struct.pack("<QIII", 2, 128, 128, 0)
        + struct.pack("<Q", 2)
        + (
            guid(GLOBAL)
            + guid(PART)
            + struct.pack("<QQQ", 2048, 4095, 0)
            + ucs2("EFI System Partition").ljust(72, b"\0")
        )
        + (
            guid(GLOBAL)
            + guid(PART)
            + struct.pack("<QQQ", 4096, 8191, 0)
            + ucs2("root").ljust(72, b"\0")
        ),
        f"GPT disk {PART}: 2 partitions (EFI System Partition, root)",
    ),
    "handoff tables": (
        EV_EFI_HANDOFF_TABLES,
        struct.pack("<Q", 2)
        + guid("8868e871-e4f1-11d3-bc22-0080c73c8881")
        + struct.pack("<Q", 0x7FB7E014)
        + guid("f2fd1544-9794-4a2c-992e-e5bbcf20e394")
        + struct.pack("<Q", 0x7F8E0000),
        "2 tables (ACPI_20_TABLE, SMBIOS3_TABLE)",
    ),
    "undecodable variable": (EV_EFI_VARIABLE_BOOT, b"\x01\x02", "raw: 0102 (2 bytes)"),
    "unknown type": (0x8401, b"\x01", "raw: 01 (1 byte)"),
    "empty TXT event": (0x501, b"", "(no data)"),
    "long raw data is cut": (
        0x8401,
        bytes(range(40)),
        f"raw: {bytes(range(32)).hex()}... (40 bytes)",
    ),
}


@pytest.mark.parametrize(("event_type", "data", "text"), CASES.values(), ids=CASES.keys())
def test_event_data_reads_as_the_spec_says(event_type: int, data: bytes, text: str) -> None:
    assert describe_event_data(event_type, data) == text


def test_authority_event_names_the_certificate_and_its_owner() -> None:
    der = certificate("trustplane test CA")
    owned = describe_event_data(
        EV_EFI_VARIABLE_AUTHORITY, variable(SECURITY_DB, "db", guid(MICROSOFT) + der)
    )
    assert owned == (
        "db (EFI_IMAGE_SECURITY_DATABASE): certificate CN=trustplane test CA "
        "(owner MICROSOFT_VENDOR)"
    )
    bare = describe_event_data(EV_EFI_VARIABLE_AUTHORITY, variable(SHIM, "Shim", der))
    assert bare == "Shim (SHIM_LOCK): certificate CN=trustplane test CA"


@pytest.mark.parametrize(
    ("event_type", "name"),
    [
        (0x0, "EV_PREBOOT_CERT"),
        (0x3, "EV_NO_ACTION"),
        (0x6, "EV_EVENT_TAG"),
        (0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
        (0x80000009, "EV_EFI_HANDOFF_TABLES"),
        (0x8000000B, "EV_EFI_HANDOFF_TABLES2"),
        (0x80000010, "EV_EFI_HCRTM_EVENT"),
        (0x800000E0, "EV_EFI_VARIABLE_AUTHORITY"),
        (0x800000E1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
        (0x402, "EVTYPE_HASH_START"),
        (0x404, "EVTYPE_MLE_HASH"),
        (0x40F, "EVTYPE_OSSINITDATA_CAP_HASH"),
        (0x4FF, "EVTYPE_CAP_VALUE"),
        (0x501, "TPM_EVT_TBOOT_HASH"),
        (0x8401, "0x8401"),
    ],
)
def test_event_type_names(event_type: int, name: str) -> None:
    assert event_type_name(event_type) == name


def test_secure_boot_variable_of_a_real_log() -> None:
    log = parse_eventlog((EVENTLOGS / "tpm2-tools" / "event-uefivar.bin").read_bytes())
    assert log.events[1].type_name == "EV_EFI_VARIABLE_DRIVER_CONFIG"
    assert log.events[1].description == "SecureBoot (EFI_GLOBAL_VARIABLE): 01"


AGILE = [
    (p, e)
    for p, e in expected_logs()
    if e["expected_pcrs"] is not None and e.get("spec_id") is not None
]


@pytest.mark.parametrize(
    ("path", "expected"), AGILE, ids=[str(p.relative_to(EVENTLOGS)) for p, _ in AGILE]
)
def test_spec_id_header_matches_the_expected_json(path: Path, expected: dict[str, Any]) -> None:
    spec = expected["spec_id"]
    header = parse_eventlog(path.read_bytes()).events[0]
    decoded = parse_spec_id_event(header.data)
    major, minor = (int(x) for x in spec["specVersion"].split("."))
    assert (decoded.platform_class, decoded.spec_version_major, decoded.spec_version_minor) == (
        spec["platformClass"],
        major,
        minor,
    )
    assert (decoded.spec_errata, decoded.uintn_size) == (spec["errata"], spec["uintnSize"])
    assert decoded.algorithms == tuple(
        (int(a["algorithmId"], 16), a["digestSize"]) for a in spec["algorithms"]
    )
    names = ", ".join(a["name"] for a in spec["algorithms"])
    assert header.description == (
        f"Spec ID Event03: platform class {spec['platformClass']}, spec {spec['specVersion']} "
        f"errata {spec['errata']}, uintn size {spec['uintnSize']}, algorithms {names}"
    )


def test_every_event_of_every_log_has_a_one_line_description() -> None:
    for path, expected in expected_logs():
        if expected["expected_pcrs"] is None:
            continue
        for event in parse_eventlog(path.read_bytes()).events:
            text = event.description
            assert text, (path, event.index)
            assert "\n" not in text, (path, event.index)
            assert "\r" not in text, (path, event.index)


DECODED_KINDS = {
    "EV_EFI_VARIABLE_BOOT",
    "EV_EFI_VARIABLE_DRIVER_CONFIG",
    "EV_EFI_VARIABLE_AUTHORITY",
    "EV_EFI_ACTION",
    "EV_SEPARATOR",
    "EV_EFI_BOOT_SERVICES_APPLICATION",
    "EV_EFI_BOOT_SERVICES_DRIVER",
    "EV_EFI_GPT_EVENT",
    "EV_EFI_HANDOFF_TABLES",
    "EV_EFI_PLATFORM_FIRMWARE_BLOB",
}


def test_decodable_kinds_never_fall_back_to_raw_in_the_shared_logs() -> None:
    for path, expected in expected_logs():
        if expected["expected_pcrs"] is None:
            continue
        for event in parse_eventlog(path.read_bytes()).events:
            if event.type_name in DECODED_KINDS:
                assert not event.description.startswith("raw:"), (path.name, event.index)
                assert "undecodable" not in event.description, (path.name, event.index)


def test_a_certificate_with_an_unknown_version_is_no_subject() -> None:
    """cryptography raises InvalidVersion (not a ValueError) for a version field of 3 (v4):
    the description falls back instead of raising (found by the event-log fuzz test)."""
    from trustcore.eventlog.descriptions import _certificate_subject  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "db")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    assert _certificate_subject(bytes(der)) == "CN=db"
    version = der.find(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))  # [0] EXPLICIT INTEGER 2 (v3)
    der[version + 4] = 3
    assert _certificate_subject(bytes(der)) is None
