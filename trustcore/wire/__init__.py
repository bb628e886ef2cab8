"""The messages the node agent and the hub exchange, and their one encoding.

Every message is a JSON object. Binary fields are standard base64 (with padding); PCR values and
digests are lower-case hex. Decoding is strict: unknown types, missing fields, oversized fields
and wrong encodings raise :class:`WireError` (a :class:`~trustcore.errors.ParseError`) naming the
field, so a handler can answer with a precise 400.

The attestation report binds its whole body to the TPM quote: the agent serialises the body once
(:func:`encode_report_body`, canonical JSON: sorted keys, no spaces, ASCII) and sends those exact
bytes as a string; the quote's qualifying data is ``SHA-256(nonce || SHA-256(body_bytes))``
(:func:`report_qualifying_data`). The hub hashes the bytes it received, never a re-encoding.

This package does no I/O; transport (HTTP paths, TLS) belongs to the agent and the hub. Its
modules: :mod:`~trustcore.wire.fields` (limits, :class:`WireError`, field codecs, PCR maps),
:mod:`~trustcore.wire.enrollment`, :mod:`~trustcore.wire.attestation` and
:mod:`~trustcore.wire.keys` (the messages).
"""

from __future__ import annotations

from trustcore.wire.attestation import (
    AssetTagEvidence,
    Challenge,
    EventLogEvidence,
    MissingEvidence,
    Report,
    ReportBody,
    ReportResult,
    encode_report_body,
    report_qualifying_data,
)
from trustcore.wire.enrollment import (
    HANDLE_SIZE,
    ActivateRequest,
    EnrollChallenge,
    Enrollment,
    EnrollRequest,
    binding_qualifying_data,
)
from trustcore.wire.fields import (
    MAX_BODY_BYTES,
    MAX_CERT_BYTES,
    MAX_EVENTLOG_BYTES,
    MAX_PCR_INDEX,
    MAX_TEXT,
    MAX_TPM_BLOB_BYTES,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    WireError,
    b64,
    decode_pcr_selection,
    decode_pcr_values,
    encode_pcr_selection,
    encode_pcr_values,
    host_id_from_ek,
)
from trustcore.wire.keys import (
    MAX_ANNOTATIONS,
    KeyReleaseRequest,
    KeyReleaseResult,
    ReleaseAuthorization,
    ReleasedKey,
)

__all__ = [
    "HANDLE_SIZE",
    "MAX_ANNOTATIONS",
    "MAX_BODY_BYTES",
    "MAX_CERT_BYTES",
    "MAX_EVENTLOG_BYTES",
    "MAX_PCR_INDEX",
    "MAX_TEXT",
    "MAX_TPM_BLOB_BYTES",
    "NONCE_SIZE",
    "PROTOCOL_VERSION",
    "ActivateRequest",
    "AssetTagEvidence",
    "Challenge",
    "EnrollChallenge",
    "EnrollRequest",
    "Enrollment",
    "EventLogEvidence",
    "KeyReleaseRequest",
    "KeyReleaseResult",
    "MissingEvidence",
    "ReleaseAuthorization",
    "ReleasedKey",
    "Report",
    "ReportBody",
    "ReportResult",
    "WireError",
    "b64",
    "binding_qualifying_data",
    "decode_pcr_selection",
    "decode_pcr_values",
    "encode_pcr_selection",
    "encode_pcr_values",
    "encode_report_body",
    "host_id_from_ek",
    "report_qualifying_data",
]
