"""A sentence for people for every reason id the status page shows.

Reason ids are the stable contract (``quote.signature_invalid``); these sentences are only for
the page and may be reworded freely. Exact ids first, then patterns for families whose middle
part varies (``flavor.<part>.<what>``, ``<structure>.signature_invalid``), then a sentence from
the prefix. Unknown ids still get a sentence; the id itself is always shown beside it.
"""

from __future__ import annotations

from typing import Final

EXACT: Final[dict[str, str]] = {
    "report.expired": "No valid report arrived before the last one expired.",
    "host.unknown": "The hub does not know this host's attestation key.",
    "quote.signature_invalid": "The TPM quote is not signed by this host's attestation key.",
    "quote.magic_invalid": "The quoted structure was not produced by a TPM.",
    "quote.type_invalid": "The signed structure is not a TPM quote.",
    "quote.qualifying_data_mismatch": "The quote does not bind this report's nonce and body.",
    "quote.malformed": "The TPM quote could not be decoded.",
    "quote.invalid": "The TPM quote is not valid.",
    "quote.pcr_selection_mismatch": "The reported PCRs are not the ones the TPM quoted.",
    "quote.pcr_selection_insufficient": "The quote does not cover every PCR the policy needs.",
    "quote.pcr_selection_empty": "The quote covers no PCRs at all.",
    "quote.pcr_values_missing": "Values for some quoted PCRs are missing from the report.",
    "quote.pcr_digest_mismatch": "The reported PCR values do not hash to the quoted digest.",
    "eventlog.replay_mismatch": "Replaying the event log does not give the quoted PCR values.",
    "eventlog.not_quoted": "The event log extends none of the quoted PCRs.",
    "eventlog.truncated": "The event log ends in the middle of an event.",
    "eventlog.too_large": "The event log is larger than the hub accepts.",
    "eventlog.too_many_events": "The event log has more events than the hub accepts.",
    "flavor.none_assigned": "No flavor (reference measurements) is assigned to this host.",
    "flavor.none_matched": "None of the assigned flavors matches the host's measurements.",
    "flavor.engine_unavailable": "This hub cannot evaluate flavors yet.",
    "flavor.evidence_incomplete": "The report lacks evidence a flavor rule needs.",
    "flavor.vacuous": "The flavors assigned to this host check nothing.",
    "assettag.mismatch": "The TPM-certified asset tags differ from the hub's tags for this host.",
    "nonce.unknown": "The report's nonce was never issued to this host.",
    "nonce.replayed": "The report's nonce was already used.",
    "nonce.expired": "The report's nonce expired before the report arrived.",
    "enroll.activation_failed": "The host could not prove its AK and EK live in one TPM.",
    "enroll.challenge_expired": "The host answered its enrollment challenge too late.",
    "enroll.no_challenge": "An enrollment answer came without an open challenge.",
    "enroll.ek_certificate_required": "The host has no EK certificate from a known TPM vendor.",
    "enroll.ek_certificate_invalid": "The host's EK certificate is not valid for its EK.",
    "enroll.ek_certificate_untrusted": "The EK certificate does not chain to a known TPM vendor.",
    "enroll.refused": "The hub refused an enrollment.",
}

FLAVOR_WHAT: Final[dict[str, str]] = {
    "pcr_mismatch": "a PCR value differs from the {part} flavor",
    "eventlog_mismatch": "the event log differs from the {part} flavor",
    "eventlog_missing": "the event log lacks events the {part} flavor requires",
    "missing": "no {part} flavor is defined but one is required",
}

PREFIXES: Final[dict[str, str]] = {
    "quote": "The TPM quote failed a check.",
    "eventlog": "The event log could not be used.",
    "uefi": "A UEFI event in the log could not be decoded.",
    "txtheap": "The Intel TXT heap could not be decoded.",
    "flavor": "The measurements do not satisfy the host's flavors.",
    "certify": "The TPM certification of a key failed a check.",
    "nvcertify": "The TPM certification of the asset-tag index failed a check.",
    "enroll": "Enrollment was refused.",
    "nonce": "The report's nonce was refused.",
}


def describe_reason(reason: str) -> str:
    """A sentence for ``reason``; never raises, whatever the id."""
    if reason in EXACT:
        return EXACT[reason]
    parts = reason.split(".")
    if len(parts) == 3 and parts[0] == "flavor" and parts[2] in FLAVOR_WHAT:
        part = parts[1].replace("_", " ")
        text = FLAVOR_WHAT[parts[2]].format(part=part)
        return text[0].upper() + text[1:] + "."
    if parts[-1] == "signature_invalid":
        return f"The {parts[0]} signature does not verify with this host's attestation key."
    return PREFIXES.get(parts[0], "See the reason id.")
