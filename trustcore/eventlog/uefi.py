"""UEFI structures that event data is made of, decoded into text.

GUIDs (with the well-known names people look for), UCS-2 strings, device paths (in the UEFI
specification's "device path to text" notation: ``PciRoot(0x0)/Pci(0x1f,0x2)/Sata(...)``),
EFI_LOAD_OPTION (``Boot####``) and EFI_SIGNATURE_LIST (``db``, ``dbx``, ``PK``, ``KEK``). Every
decoder works on untrusted bytes through a bounded :class:`Reader` and raises only
:class:`~trustcore.errors.ParseError`; turning a failure into a "raw" description is the caller's
choice (:mod:`trustcore.eventlog.descriptions`).
"""

from __future__ import annotations

import struct
from typing import Final

from trustcore.errors import ParseError

MAX_DEVICE_PATH_NODES: Final = 64
MAX_TEXT_CHARS: Final = 512

EFI_GLOBAL_VARIABLE: Final = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_IMAGE_SECURITY_DATABASE: Final = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SHIM_LOCK_GUID: Final = "605dab50-e046-4300-abb6-3dd810dd8b23"

GUID_NAMES: Final[dict[str, str]] = {
    EFI_GLOBAL_VARIABLE: "EFI_GLOBAL_VARIABLE",
    EFI_IMAGE_SECURITY_DATABASE: "EFI_IMAGE_SECURITY_DATABASE",
    SHIM_LOCK_GUID: "SHIM_LOCK",
    "77fa9abd-0359-4d32-bd60-28f4e78f784b": "MICROSOFT_VENDOR",
    # Configuration tables handed to the OS (EV_EFI_HANDOFF_TABLES).
    "eb9d2d30-2d88-11d3-9a16-0090273fc14d": "ACPI_TABLE",
    "8868e871-e4f1-11d3-bc22-0080c73c8881": "ACPI_20_TABLE",
    "eb9d2d31-2d88-11d3-9a16-0090273fc14d": "SMBIOS_TABLE",
    "f2fd1544-9794-4a2c-992e-e5bbcf20e394": "SMBIOS3_TABLE",
    # EFI_SIGNATURE_LIST types.
    "c1c41626-504c-4092-aca9-41f936934328": "EFI_CERT_SHA256",
    "a5c059a1-94e4-4aa7-87b5-ab155c2bf072": "EFI_CERT_X509",
    "826ca512-cf10-4ac9-b187-be01496631bd": "EFI_CERT_SHA1",
    "0b6e5233-a65c-44c9-9407-d9ab83bfc8bd": "EFI_CERT_SHA224",
    "ff3e5307-9fd0-48c9-85f1-8ad56c701e01": "EFI_CERT_SHA384",
    "093e0fae-a6c4-4f50-9f1b-d41e2b89c19a": "EFI_CERT_SHA512",
    "3c5766e8-269c-4e34-aa14-ed776e85b3b6": "EFI_CERT_RSA2048",
    "3bd2a492-96c0-4079-b420-fcf98ef103ed": "EFI_CERT_X509_SHA256",
    "7076876e-80c2-4ee6-aad2-28b349a6865b": "EFI_CERT_X509_SHA384",
    "446dbf63-2502-4cda-bcfa-2465d2b0fe9d": "EFI_CERT_X509_SHA512",
    "4aafd29d-68df-49ee-8aa9-347d375665a7": "EFI_CERT_TYPE_PKCS7",
}

_SIGNATURE_KINDS: Final[dict[str, str]] = {
    "EFI_CERT_SHA256": "SHA256 hash",
    "EFI_CERT_SHA1": "SHA1 hash",
    "EFI_CERT_SHA224": "SHA224 hash",
    "EFI_CERT_SHA384": "SHA384 hash",
    "EFI_CERT_SHA512": "SHA512 hash",
    "EFI_CERT_X509": "X509 certificate",
    "EFI_CERT_RSA2048": "RSA2048 key",
    "EFI_CERT_X509_SHA256": "X509 TBS SHA256 hash",
    "EFI_CERT_X509_SHA384": "X509 TBS SHA384 hash",
    "EFI_CERT_X509_SHA512": "X509 TBS SHA512 hash",
}

_GUID: Final = struct.Struct("<IHH8s")


class Reader:
    """Bounded little-endian reads over ``data``; every overrun raises ParseError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise ParseError(
                f"{what}: needs {n} bytes, {len(self.data) - self.pos} remain",
                offset=self.pos,
                reason="uefi.truncated",
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def u64(self, what: str) -> int:
        return int.from_bytes(self.take(8, what), "little")

    def guid(self, what: str) -> str:
        return format_guid(self.take(16, what))


def format_guid(raw: bytes) -> str:
    """The registry form (``8be4df61-93ca-11d2-aa0d-00e098032b8c``) of a 16-byte EFI_GUID."""
    a, b, c, d = _GUID.unpack(raw)
    return f"{a:08x}-{b:04x}-{c:04x}-{d[:2].hex()}-{d[2:].hex()}"


def guid_label(guid: str) -> str:
    """``EFI_GLOBAL_VARIABLE`` for a well-known GUID, else the GUID itself."""
    return GUID_NAMES.get(guid, guid)


def decode_ucs2(raw: bytes, what: str, *, offset: int = 0) -> str:
    """A UCS-2 (UTF-16LE) string, cut at its first NUL; raises ParseError when not text."""
    if len(raw) % 2:
        if raw[-1] != 0:
            raise ParseError(f"{what}: odd UCS-2 length", offset=offset, reason="uefi.bad_string")
        raw = raw[:-1]
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError:
        raise ParseError(f"{what}: not UCS-2", offset=offset, reason="uefi.bad_string") from None
    text = text.split("\0", 1)[0]
    if not text.isprintable():
        raise ParseError(f"{what}: not printable", offset=offset, reason="uefi.bad_string")
    return text[:MAX_TEXT_CHARS]


def read_ucs2z(r: Reader, what: str, limit: int) -> str:
    """A NUL-terminated UCS-2 string starting at ``r.pos`` within ``limit`` bytes."""
    start = r.pos
    end = min(len(r.data), start + limit)
    pos = start
    while pos + 1 < end:
        if r.data[pos] == 0 and r.data[pos + 1] == 0:
            text = decode_ucs2(r.data[start:pos], what, offset=start)
            r.pos = pos + 2
            return text
        pos += 2
    raise ParseError(f"{what}: no terminating NUL", offset=start, reason="uefi.bad_string")


# --- device paths ------------------------------------------------------------------------------


def _eisa_text(hid: int) -> str:
    if hid & 0xFFFF != 0x41D0:
        return f"0x{hid:x}"
    return f"PNP{hid >> 16:04X}"


def _node_hardware(sub: int, r: Reader) -> str | None:
    if sub == 1:
        func = r.u8("Pci.Function")
        dev = r.u8("Pci.Device")
        return f"Pci(0x{dev:x},0x{func:x})"
    if sub == 3:
        mem = r.u32("MemoryMapped.Type")
        start = r.u64("MemoryMapped.Start")
        end = r.u64("MemoryMapped.End")
        return f"MemoryMapped(0x{mem:x},0x{start:x},0x{end:x})"
    if sub == 4:
        return f"VenHw({r.guid('VenHw.Guid')})"
    if sub == 5:
        return f"Ctrl(0x{r.u32('Ctrl'):x})"
    return None


def _node_acpi(sub: int, r: Reader) -> str | None:
    if sub == 1:
        hid = r.u32("Acpi.HID")
        uid = r.u32("Acpi.UID")
        if hid == 0x0A0341D0:
            return f"PciRoot(0x{uid:x})"
        if hid == 0x0A0841D0:
            return f"PcieRoot(0x{uid:x})"
        return f"Acpi({_eisa_text(hid)},0x{uid:x})"
    if sub == 3:
        return f"AcpiAdr(0x{r.u32('AcpiAdr'):x})"
    return None


def _node_messaging(sub: int, r: Reader, length: int) -> str | None:
    if sub == 1:
        primary = r.u8("Ata.Primary")
        slave = r.u8("Ata.Slave")
        lun = r.u16("Ata.Lun")
        channel = "Secondary" if primary else "Primary"
        role = "Slave" if slave else "Master"
        return f"Ata({channel},{role},0x{lun:x})"
    if sub == 2:
        pun = r.u16("Scsi.Pun")
        lun = r.u16("Scsi.Lun")
        return f"Scsi(0x{pun:x},0x{lun:x})"
    if sub == 5:
        port = r.u8("USB.Port")
        iface = r.u8("USB.Interface")
        return f"USB(0x{port:x},0x{iface:x})"
    if sub == 11:
        mac = r.take(32, "MAC.Address")
        if_type = r.u8("MAC.IfType")
        size = 6 if if_type in (0, 1) else 32
        return f"MAC({mac[:size].hex()},0x{if_type:x})"
    if sub == 18:
        hba = r.u16("Sata.HBAPort")
        pmp = r.u16("Sata.PortMultiplierPort")
        lun = r.u16("Sata.Lun")
        return f"Sata(0x{hba:x},0x{pmp:x},0x{lun:x})"
    if sub == 23:
        nsid = r.u32("NVMe.NamespaceId")
        eui = r.take(8, "NVMe.EUI64")
        return f"NVMe(0x{nsid:x},{'-'.join(f'{b:02X}' for b in reversed(eui))})"
    if sub == 24:
        raw = r.take(length - 4, "Uri")
        text = raw.decode("ascii", errors="replace")
        return f"Uri({text})"
    if sub == 10:
        return f"VenMsg({r.guid('VenMsg.Guid')})"
    return None


def _node_media(sub: int, r: Reader, length: int) -> str | None:
    if sub == 1:
        part = r.u32("HD.PartitionNumber")
        start = r.u64("HD.PartitionStart")
        size = r.u64("HD.PartitionSize")
        sig = r.take(16, "HD.Signature")
        fmt = r.u8("HD.MBRType")
        sig_type = r.u8("HD.SignatureType")
        del fmt
        if sig_type == 2:
            return f"HD({part},GPT,{format_guid(sig)},0x{start:x},0x{size:x})"
        if sig_type == 1:
            mbr = int.from_bytes(sig[:4], "little")
            return f"HD({part},MBR,0x{mbr:08x},0x{start:x},0x{size:x})"
        return f"HD({part},{sig_type},0,0x{start:x},0x{size:x})"
    if sub == 2:
        entry = r.u32("CDROM.BootEntry")
        start = r.u64("CDROM.PartitionStart")
        size = r.u64("CDROM.PartitionSize")
        return f"CDROM(0x{entry:x},0x{start:x},0x{size:x})"
    if sub == 3:
        return f"VenMedia({r.guid('VenMedia.Guid')})"
    if sub == 4:
        start = r.pos
        return decode_ucs2(r.take(length - 4, "FilePath"), "FilePath", offset=start)
    if sub == 5:
        return f"Media({r.guid('Media.Guid')})"
    if sub == 6:
        return f"FvFile({r.guid('FvFile.Guid')})"
    if sub == 7:
        return f"Fv({r.guid('Fv.Guid')})"
    if sub == 8:
        r.u32("Offset.Reserved")
        start = r.u64("Offset.Start")
        end = r.u64("Offset.End")
        return f"Offset(0x{start:x},0x{end:x})"
    return None


def _node_text(node_type: int, sub: int, body: bytes) -> str:
    r = Reader(body)
    length = len(body) + 4
    text: str | None = None
    if node_type == 1:
        text = _node_hardware(sub, r)
    elif node_type == 2:
        text = _node_acpi(sub, r)
    elif node_type == 3:
        text = _node_messaging(sub, r, length)
    elif node_type == 4:
        text = _node_media(sub, r, length)
    elif node_type == 5 and sub == 1:
        dev = r.u16("BBS.DeviceType")
        r.u16("BBS.StatusFlag")
        desc = r.take(r.remaining, "BBS.Description").split(b"\0", 1)[0]
        text = f"BBS(0x{dev:x},{desc.decode('ascii', errors='replace')})"
    if text is None:
        return f"Path({node_type},{sub},{body.hex()})"
    return text


def device_path_text(data: bytes) -> str:
    """The text form of a device path (instances ``,``-separated).

    A malformed node after at least one good one ends the text with ``/...`` (firmware often
    pads or truncates paths); a path with no decodable node raises ParseError.
    """
    r = Reader(data)
    instances: list[list[str]] = [[]]
    for _ in range(MAX_DEVICE_PATH_NODES):
        if r.remaining == 0:
            break
        try:
            node = _read_node(r)
        except ParseError:
            if not any(instances):
                raise
            instances[-1].append("...")
            break
        if node is None:
            break
        if node == "":
            instances.append([])
        else:
            instances[-1].append(node)
    else:
        instances[-1].append("...")
    return ",".join("/".join(nodes) for nodes in instances if nodes)


def _read_node(r: Reader) -> str | None:
    """The next node's text; "" at an end-of-instance node, None at the end of the path."""
    start = r.pos
    node_type = r.u8("DevicePath.Type")
    sub = r.u8("DevicePath.SubType")
    length = r.u16("DevicePath.Length")
    if length < 4:
        raise ParseError(
            f"device path node length {length} < 4", offset=start, reason="uefi.bad_path"
        )
    body = r.take(length - 4, "DevicePath.Node")
    if node_type == 0x7F:
        return None if sub == 0xFF else ""
    return _node_text(node_type, sub, body)


def load_option_text(data: bytes) -> str:
    """An EFI_LOAD_OPTION (``Boot####``) as ``"description" device-path``; raises ParseError."""
    r = Reader(data)
    attributes = r.u32("LoadOption.Attributes")
    path_len = r.u16("LoadOption.FilePathListLength")
    desc = read_ucs2z(r, "LoadOption.Description", r.remaining)
    path = device_path_text(r.take(path_len, "LoadOption.FilePathList"))
    active = "" if attributes & 1 else " (inactive)"
    text = f'"{desc}"{active}'
    return f"{text} {path}" if path else text


def signature_lists_text(data: bytes) -> str:
    """A summary of EFI_SIGNATURE_LISTs (``2 X509 certificates, 1 SHA256 hash``)."""
    r = Reader(data)
    counts: dict[str, int] = {}
    while r.remaining:
        start = r.pos
        sig_type = r.guid("SignatureList.Type")
        list_size = r.u32("SignatureList.ListSize")
        header_size = r.u32("SignatureList.HeaderSize")
        sig_size = r.u32("SignatureList.SignatureSize")
        body = list_size - 28 - header_size
        if list_size < 28 or body < 0 or sig_size < 16 or body % sig_size:
            raise ParseError(
                "bad EFI_SIGNATURE_LIST sizes", offset=start, reason="uefi.bad_siglist"
            )
        r.take(list_size - 28, "SignatureList.Body")
        kind = _SIGNATURE_KINDS.get(guid_label(sig_type), f"{sig_type} entry")
        counts[kind] = counts.get(kind, 0) + body // sig_size
    if not counts:
        return "empty"
    return ", ".join(_counted(n, kind) for kind, n in counts.items())


def _counted(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    plural = noun + "es" if noun.endswith(("sh", "s", "x")) else noun + "s"
    return f"{n} {plural}"
