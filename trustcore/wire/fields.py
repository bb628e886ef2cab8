"""Wire fields: limits, the one error type, field decoders and encoders, PCR maps."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any, Final

from trustcore.algorithms import BY_NAME, HASH_ALGORITHMS
from trustcore.errors import ParseError

PROTOCOL_VERSION: Final = 1
NONCE_SIZE: Final = 32

# Upper bounds on field sizes; a report larger than these is refused before any parsing.
MAX_EVENTLOG_BYTES: Final = 4 * 1024 * 1024
MAX_TPM_BLOB_BYTES: Final = 4096
MAX_CERT_BYTES: Final = 16 * 1024
MAX_TEXT: Final = 256
MAX_PCR_INDEX: Final = 23
MAX_BODY_BYTES: Final = 12 * 1024 * 1024


class WireError(ParseError):
    """A message that does not have the agreed shape."""

    reason = "wire.malformed"

    def __init__(self, message: str, *, field_name: str = "") -> None:
        super().__init__(f"{field_name}: {message}" if field_name else message, offset=0)
        self.field_name = field_name


# --- field decoders --------------------------------------------------------------------------


def _obj(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError("expected a JSON object", field_name=name)
    return value


def _req(obj: Mapping[str, Any], key: str, ctx: str) -> Any:  # noqa: ANN401 - JSON value
    if key not in obj:
        raise WireError("missing", field_name=f"{ctx}.{key}" if ctx else key)
    return obj[key]


def _str(value: object, name: str, *, max_len: int = MAX_TEXT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise WireError("expected a string", field_name=name)
    if len(value) > max_len:
        raise WireError(f"longer than {max_len} characters", field_name=name)
    if not empty and not value:
        raise WireError("must not be empty", field_name=name)
    return value


def _opt_str(value: object, name: str, *, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else _str(value, name, max_len=max_len, empty=True)


def _int(value: object, name: str, *, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError("expected an integer", field_name=name)
    if not lo <= value <= hi:
        raise WireError(f"out of range [{lo}, {hi}]", field_name=name)
    return value


def _b64(value: object, name: str, *, max_len: int) -> bytes:
    text = _str(value, name, max_len=(max_len * 4) // 3 + 4, empty=True)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("not valid base64", field_name=name) from None
    if len(raw) > max_len:
        raise WireError(f"longer than {max_len} bytes", field_name=name)
    return raw


def _opt_b64(value: object, name: str, *, max_len: int) -> bytes | None:
    return None if value is None else _b64(value, name, max_len=max_len)


def _hex(value: object, name: str, *, size: int | None = None, max_len: int = 128) -> bytes:
    text = _str(value, name, max_len=max_len)
    if text != text.lower():
        raise WireError("hex must be lower case", field_name=name)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise WireError("not valid hex", field_name=name) from None
    if size is not None and len(raw) != size:
        raise WireError(f"expected {size} bytes", field_name=name)
    return raw


def b64(data: bytes) -> str:
    """Standard base64 text of ``data`` (the wire's one binary encoding)."""
    return base64.b64encode(data).decode("ascii")


def _bank_id(name: str, field_name: str) -> int:
    alg = BY_NAME.get(name)
    if alg is None:
        raise WireError(f"unknown PCR bank {name!r}", field_name=field_name)
    return alg.alg_id


def _bank_name(alg_id: int) -> str:
    return HASH_ALGORITHMS[alg_id].name


# --- PCR maps --------------------------------------------------------------------------------

PcrSelection = Mapping[int, tuple[int, ...]]
PcrValues = Mapping[int, Mapping[int, bytes]]


def decode_pcr_selection(value: object, name: str = "pcr_selection") -> dict[int, tuple[int, ...]]:
    """``{"sha256": [0, 1, 7]}`` -> ``{0x000b: (0, 1, 7)}``; indices unique, sorted, <= 23."""
    out: dict[int, tuple[int, ...]] = {}
    for bank, pcrs in _obj(value, name).items():
        alg = _bank_id(bank, f"{name}.{bank}")
        if not isinstance(pcrs, list) or len(pcrs) > MAX_PCR_INDEX + 1:
            raise WireError("expected a list of PCR indices", field_name=f"{name}.{bank}")
        idx = [_int(p, f"{name}.{bank}", lo=0, hi=MAX_PCR_INDEX) for p in pcrs]
        if idx != sorted(set(idx)):
            raise WireError("PCR indices must be unique and ascending", field_name=f"{name}.{bank}")
        out[alg] = tuple(idx)
    return out


def encode_pcr_selection(selection: PcrSelection) -> dict[str, list[int]]:
    return {_bank_name(alg): sorted(pcrs) for alg, pcrs in selection.items()}


def decode_pcr_values(value: object, name: str = "pcr_values") -> dict[int, dict[int, bytes]]:
    """``{"sha256": {"0": "hex"}}`` -> ``{0x000b: {0: b"..."}}`` with digest sizes checked."""
    out: dict[int, dict[int, bytes]] = {}
    for bank, pcrs in _obj(value, name).items():
        alg = _bank_id(bank, f"{name}.{bank}")
        size = HASH_ALGORITHMS[alg].digest_size
        values: dict[int, bytes] = {}
        for key, hexval in _obj(pcrs, f"{name}.{bank}").items():
            if not key.isdigit() or int(key) > MAX_PCR_INDEX or str(int(key)) != key:
                raise WireError("PCR index must be 0..23", field_name=f"{name}.{bank}.{key}")
            values[int(key)] = _hex(hexval, f"{name}.{bank}.{key}", size=size)
        out[alg] = values
    return out


def encode_pcr_values(values: PcrValues) -> dict[str, dict[str, str]]:
    return {
        _bank_name(alg): {str(pcr): v.hex() for pcr, v in sorted(pcrs.items())}
        for alg, pcrs in values.items()
    }


# --- helpers ---------------------------------------------------------------------------------


def host_id_from_ek(ek_public: bytes) -> str:
    """A host's identity: the SHA-256 (hex) of its marshalled EK public area."""
    return hashlib.sha256(ek_public).hexdigest()


def _host_id(value: object) -> str:
    text = _str(value, "host_id", max_len=64)
    _hex(text, "host_id", size=32)
    return text


def _number(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise WireError("expected a number", field_name=name)
    return float(value)


def _maybe_b64(data: bytes | None) -> str | None:
    return None if data is None else b64(data)


def _expect_type(o: Mapping[str, Any], kind: str) -> None:
    if o.get("type") != kind:
        raise WireError(f"expected type {kind!r}", field_name="type")
    if o.get("version") != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {o.get('version')!r}", field_name="version")
