"""One-line human readings of event data, decoded on demand (never during parse or replay).

Covers the data people look at in a boot log: EFI variables (name, GUID, Boot#### load options,
BootOrder, signature databases, the certificate behind an authority event), image loads (device
path to file path), GPT headers, firmware blobs, handoff tables, the S-CRTM version, action /
separator / POST code / IPL text, tagged events, the Spec ID / StartupLocality / SP800-155
headers, and TXT/tboot events. Anything else, and anything that does not decode, is shown as
``raw: <hex>``. :func:`describe_event_data` never raises.
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Callable
from typing import Final

from trustcore.algorithms import HASH_ALGORITHMS
from trustcore.errors import ParseError
from trustcore.eventlog import eventtypes as et
from trustcore.eventlog.specid import SPEC_ID_SIGNATURE_03, parse_spec_id_event
from trustcore.eventlog.uefi import (
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    MAX_TEXT_CHARS,
    Reader,
    decode_ucs2,
    device_path_text,
    format_guid,
    guid_label,
    load_option_text,
    signature_lists_text,
)

RAW_PREVIEW_BYTES: Final = 32
MAX_LISTED: Final = 8
MAX_VARIABLE_NAME_CHARS: Final = 1024

_BOOT_OPTION: Final = re.compile(r"(Boot|Driver|SysPrep|PlatformRecovery)[0-9A-Fa-f]{4}")
_SIGNATURE_DATABASES: Final = {
    (EFI_GLOBAL_VARIABLE, "PK"),
    (EFI_GLOBAL_VARIABLE, "KEK"),
    (EFI_IMAGE_SECURITY_DATABASE, "db"),
    (EFI_IMAGE_SECURITY_DATABASE, "dbx"),
    (EFI_IMAGE_SECURITY_DATABASE, "dbt"),
    (EFI_IMAGE_SECURITY_DATABASE, "dbr"),
}
_PRINTABLE: Final = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
_NO_ACTION_SIGNATURES: Final = (
    b"SP800-155 Event3",
    b"SP800-155 Event",
    b"NvIndexInstance",
    b"NvIndexDynamic",
    b"H-CRTM CompMeas",
)


def describe_event_data(event_type: int, data: bytes) -> str:
    """A one-line reading of ``data`` for an event of ``event_type``; never raises."""
    decoder = _DECODERS.get(event_type)
    text: str | None = None
    try:
        if decoder is not None:
            text = decoder(data)
        elif et.is_txt_event_type(event_type):
            text = "(no data)" if not data else None
        else:
            text = ascii_text(data)
    except ParseError:
        text = None
    return text if text is not None else raw_text(data)


def raw_text(data: bytes) -> str:
    """``raw: 0011.. (N bytes)``: how undecoded data is shown."""
    if not data:
        return "raw: (no data)"
    more = "..." if len(data) > RAW_PREVIEW_BYTES else ""
    unit = "byte" if len(data) == 1 else "bytes"
    return f"raw: {data[:RAW_PREVIEW_BYTES].hex()}{more} ({len(data)} {unit})"


def ascii_text(data: bytes) -> str | None:
    """``data`` as one line of text if it is printable ASCII (NUL-terminated or not)."""
    body = data.rstrip(b"\0")
    if not body or not set(body) <= _PRINTABLE:
        return None
    text = body.decode("ascii").replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."


def _ucs2_text(data: bytes) -> str | None:
    if len(data) < 2:
        return None
    try:
        text = decode_ucs2(data, "text")
    except ParseError:
        return None
    return text or None


# --- decoders, one per event type --------------------------------------------------------------


def _text_or_blob(data: bytes) -> str | None:
    """EV_POST_CODE and friends: a string, or a UEFI_PLATFORM_FIRMWARE_BLOB."""
    text = ascii_text(data)
    if text is not None:
        return text
    if len(data) == 16:
        return _firmware_blob(data)
    return None


def _firmware_blob(data: bytes) -> str | None:
    if len(data) != 16:
        return None
    base, length = struct.unpack("<QQ", data)
    return f"firmware blob at 0x{base:x}, {length} bytes"


def _firmware_blob2(data: bytes) -> str | None:
    r = Reader(data)
    desc = r.take(r.u8("Blob2.DescriptionSize"), "Blob2.Description")
    base = r.u64("Blob2.Base")
    length = r.u64("Blob2.Length")
    label = ascii_text(desc) or desc.hex()
    return f"{label}: firmware blob at 0x{base:x}, {length} bytes"


def _s_crtm_version(data: bytes) -> str | None:
    text = _ucs2_text(data) or ascii_text(data)
    if text is not None:
        return text
    if len(data) == 16:
        return f"GUID {format_guid(data)}"
    return None


def _separator(data: bytes) -> str | None:
    if len(data) == 4:
        (value,) = struct.unpack("<I", data)
        error = " (error)" if value in (1, 0xFFFFFFFF) else ""
        return f"0x{value:08x}{error}"
    return ascii_text(data)


def _ipl(data: bytes) -> str | None:
    return ascii_text(data) or _ucs2_text(data)


def _event_tag(data: bytes) -> str | None:
    r = Reader(data)
    tag = r.u32("TaggedEvent.ID")
    body = r.take(r.u32("TaggedEvent.DataSize"), "TaggedEvent.Data")
    text = ascii_text(body) or _ucs2_text(body)
    return f"tag 0x{tag:08x}: {text if text is not None else f'{len(body)} bytes'}"


def _no_action(data: bytes) -> str | None:
    if data.startswith(SPEC_ID_SIGNATURE_03):
        spec = parse_spec_id_event(data)
        names = ", ".join(_alg_name(a) for a, _ in spec.algorithms)
        return (
            f"Spec ID Event03: platform class {spec.platform_class}, spec "
            f"{spec.spec_version_major}.{spec.spec_version_minor} errata {spec.spec_errata}, "
            f"uintn size {spec.uintn_size}, algorithms {names}"
        )
    if data.startswith((b"Spec ID Event00\0", b"Spec ID Event02\0")) and len(data) >= 24:
        _, pclass, minor, major, errata = struct.unpack_from("<16sIBBB", data)
        return (
            f"{data[:15].decode()}: platform class {pclass}, spec {major}.{minor} "
            f"errata {errata}, algorithms sha1"
        )
    if data.startswith(b"StartupLocality\0") and len(data) == 17:
        return f"StartupLocality {data[16]}"
    for sig in _NO_ACTION_SIGNATURES:
        if data.startswith(sig):
            return f"{sig.decode()} ({len(data)} bytes)"
    return None


def _alg_name(alg_id: int) -> str:
    known = HASH_ALGORITHMS.get(alg_id)
    return known.name if known is not None else f"0x{alg_id:04x}"


def _variable(data: bytes, *, authority: bool = False) -> str | None:
    """UEFI_VARIABLE_DATA: GUID, name length (chars), data length, UCS-2 name, data.

    For EV_EFI_VARIABLE_AUTHORITY the data is the one signature that authorised an image (an
    EFI_SIGNATURE_DATA: owner GUID and certificate), not the whole variable.
    """
    r = Reader(data)
    guid = r.guid("Variable.Guid")
    chars = r.u64("Variable.UnicodeNameLength")
    size = r.u64("Variable.VariableDataLength")
    if chars > MAX_VARIABLE_NAME_CHARS:
        raise ParseError("variable name too long", offset=16, reason="uefi.bad_variable")
    name = decode_ucs2(r.take(2 * chars, "Variable.Name"), "Variable.Name", offset=32)
    value = r.take(min(size, r.remaining), "Variable.Data")
    short = " (truncated)" if len(value) < size else ""
    if authority and len(value) > 8:
        shown = _authority_value(value)
    else:
        shown = _variable_value(guid, name, value)
    return f"{name} ({guid_label(guid)}): {shown}{short}"


def _authority(data: bytes) -> str | None:
    return _variable(data, authority=True)


def _variable_value(guid: str, name: str, value: bytes) -> str:
    if not value:
        return "(empty)"
    if guid == EFI_GLOBAL_VARIABLE and _BOOT_OPTION.fullmatch(name):
        return _decoded_or_size(load_option_text, value)
    if guid == EFI_GLOBAL_VARIABLE and name.endswith("Order") and len(value) % 2 == 0:
        entries = struct.unpack(f"<{len(value) // 2}H", value)
        return ", ".join(f"{n:04X}" for n in entries)
    if (guid, name) in _SIGNATURE_DATABASES:
        return _decoded_or_size(signature_lists_text, value)
    if len(value) <= 8:
        return value.hex()
    return _authority_value(value)


def _authority_value(value: bytes) -> str:
    """Signature data (owner GUID + certificate), a bare certificate, text, or a size."""
    if value[:2] == b"\x30\x82":
        subject = _certificate_subject(value)
        if subject is not None:
            return f"certificate {subject}"
    if len(value) > 18 and value[16:18] == b"\x30\x82":
        subject = _certificate_subject(value[16:])
        if subject is not None:
            return f"certificate {subject} (owner {guid_label(format_guid(value[:16]))})"
    text = ascii_text(value)
    return text if text is not None else f"{len(value)} bytes"


def _certificate_subject(der: bytes) -> str | None:
    """The subject of a DER X.509 certificate, or None if it is not one."""
    from cryptography import x509  # noqa: PLC0415 - only when a description asks for it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns about odd but parseable names
        try:
            return x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
            return None


def _decoded_or_size(decode: Callable[[bytes], str], value: bytes) -> str:
    try:
        return decode(value)
    except ParseError:
        return f"{len(value)} bytes (undecodable)"


def _image_load(data: bytes) -> str | None:
    """UEFI_IMAGE_LOAD_EVENT: location, length, link-time address, device path."""
    r = Reader(data)
    location = r.u64("ImageLoad.Location")
    length = r.u64("ImageLoad.Length")
    r.u64("ImageLoad.LinkTimeAddress")
    path_len = r.u64("ImageLoad.LengthOfDevicePath")
    where = f"image at 0x{location:x}, {length} bytes"
    if path_len == 0:
        return where
    try:
        path = device_path_text(r.take(path_len, "ImageLoad.DevicePath"))
    except ParseError:
        return f"{where} (device path undecodable)"
    return path or where


def _gpt(data: bytes) -> str | None:
    """UEFI_GPT_DATA: the partition table header, then the partition entries."""
    r = Reader(data)
    if r.take(8, "GPT.Signature") != b"EFI PART":
        return None
    r.take(48, "GPT.Header")
    disk = r.guid("GPT.DiskGUID")
    r.take(8, "GPT.PartitionEntryLBA")
    r.u32("GPT.NumberOfPartitionEntries")
    entry_size = r.u32("GPT.SizeOfPartitionEntry")
    r.u32("GPT.PartitionEntryArrayCRC32")
    count = r.u64("GPT.NumberOfPartitions")
    if entry_size < 128:
        return None
    names: list[str] = []
    for _ in range(min(count, MAX_LISTED)):
        entry = r.take(entry_size, "GPT.Partition")
        try:
            names.append(decode_ucs2(entry[56:128], "GPT.PartitionName") or "(unnamed)")
        except ParseError:
            names.append("(undecodable)")
    more = ", ..." if count > MAX_LISTED else ""
    return f"GPT disk {disk}: {count} partitions ({', '.join(names)}{more})"


def _handoff_tables(data: bytes, *, with_description: bool = False) -> str | None:
    r = Reader(data)
    label = ""
    if with_description:
        desc = r.take(r.u8("HandoffTables2.DescriptionSize"), "HandoffTables2.Description")
        label = f"{ascii_text(desc) or desc.hex()}: "
    count = r.u64("HandoffTables.NumberOfTables")
    if count * 24 > r.remaining:
        return None
    tables: list[str] = []
    for _ in range(min(count, MAX_LISTED)):
        guid = r.guid("HandoffTables.VendorGuid")
        r.u64("HandoffTables.VendorTable")
        tables.append(guid_label(guid))
    more = ", ..." if count > MAX_LISTED else ""
    return f"{label}{count} tables ({', '.join(tables)}{more})"


def _handoff_tables2(data: bytes) -> str | None:
    return _handoff_tables(data, with_description=True)


def _labelled_blob(data: bytes) -> str | None:
    """Data that opens with a NUL-terminated ASCII signature (``GCE NonHostInfo``)."""
    text = ascii_text(data)
    if text is not None:
        return text
    head, nul, _ = data.partition(b"\0")
    label = ascii_text(head) if nul and len(head) >= 4 else None
    return f"{label} ({len(data)} bytes)" if label is not None else None


_DECODERS: Final[dict[int, Callable[[bytes], str | None]]] = {
    et.EV_POST_CODE: _text_or_blob,
    et.EV_POST_CODE2: _text_or_blob,
    et.EV_S_CRTM_CONTENTS: _text_or_blob,
    et.EV_CPU_MICROCODE: _text_or_blob,
    et.EV_S_CRTM_VERSION: _s_crtm_version,
    et.EV_SEPARATOR: _separator,
    et.EV_ACTION: ascii_text,
    et.EV_EFI_ACTION: ascii_text,
    et.EV_EFI_HCRTM_EVENT: ascii_text,
    et.EV_IPL: _ipl,
    et.EV_EVENT_TAG: _event_tag,
    et.EV_NO_ACTION: _no_action,
    et.EV_EFI_VARIABLE_DRIVER_CONFIG: _variable,
    et.EV_EFI_VARIABLE_BOOT: _variable,
    et.EV_EFI_VARIABLE_BOOT2: _variable,
    et.EV_EFI_VARIABLE_AUTHORITY: _authority,
    et.EV_EFI_BOOT_SERVICES_APPLICATION: _image_load,
    et.EV_EFI_BOOT_SERVICES_DRIVER: _image_load,
    et.EV_EFI_RUNTIME_SERVICES_DRIVER: _image_load,
    et.EV_EFI_GPT_EVENT: _gpt,
    et.EV_EFI_GPT_EVENT2: _gpt,
    et.EV_EFI_PLATFORM_FIRMWARE_BLOB: _firmware_blob,
    et.EV_EFI_PLATFORM_FIRMWARE_BLOB2: _firmware_blob2,
    et.EV_EFI_HANDOFF_TABLES: _handoff_tables,
    et.EV_EFI_HANDOFF_TABLES2: _handoff_tables2,
    et.EV_NONHOST_CODE: _labelled_blob,
    et.EV_NONHOST_CONFIG: _labelled_blob,
    et.EV_NONHOST_INFO: _labelled_blob,
}
