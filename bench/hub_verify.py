"""The hub's report verification throughput, against bare ECDSA, on the same swtpm quotes.

``python -m bench.hub_verify --json`` starts its own swtpm, extends PCRs 0-7 with the events of
go-attestation's sample UEFI log (from tests/data/eventlogs), makes N reports (distinct nonces, body
bound by ``report_qualifying_data``, the log sent by digest only after the first report) and
measures reports per second, one core, best of several rounds:

- hub: :meth:`hub.verification.ReportVerifier.verify` with a real SQLite store (nonce consumed
  per report on the store's writer thread, AK and parsed log cached), no HTTP;
- quote_only: :func:`trustcore.quote.verify_quote` on the same quotes (no nonce store, no log);
- bare_ecdsa: ``cryptography``'s ECDSA P-256 verify of the same signatures (the baseline).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hub.config import AttestationConfig
from hub.store import HostFacts, HostKeys, Store
from hub.verification import Outcome, ReportVerifier
from nodeagent.tpm import TpmDevice
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.eventlog import parse_eventlog
from trustcore.quote import AttestationKey, verify_quote
from trustcore.tpm.pcrs import PcrSelection
from trustcore.tpm.signature import EccSignature, parse_signature
from trustcore.wire import (
    EventLogEvidence,
    Report,
    ReportBody,
    encode_report_body,
    host_id_from_ek,
    report_qualifying_data,
)
from trustplane.swtpm import SwtpmFactory

SELECTION = PcrSelection.of({TPM_ALG_SHA256: range(8)})
SHARED = Path(
    os.environ.get("TRUSTPLANE_SHARED", Path(__file__).resolve().parents[1] / "tests" / "data")
)
LOG = SHARED / "eventlogs" / "go-attestation" / "crypto_agile_eventlog.bin"


def make_reports(count: int) -> tuple[bytes, bytes, list[Report]]:
    """(EK public, AK public, reports) from a fresh swtpm that measured the sample log."""
    data = LOG.read_bytes()
    digest = hashlib.sha256(data).digest()
    with SwtpmFactory() as factory, TpmDevice(factory.start().tcti) as device:
        for event in parse_eventlog(data).events:
            if event.event_type != 3:
                device.pcr_extend(event.pcr, {TPM_ALG_SHA256: event.digests[TPM_ALG_SHA256]})
        ek = device.create_ek("rsa2048")
        device.flush(ek.key)
        ak, _ = device.create_ak("ecc256")
        host_id = host_id_from_ek(ek.key.public)
        values = device.pcr_read(SELECTION)
        reports = []
        for i in range(count):
            nonce = hashlib.sha256(b"nonce %d" % i).digest()
            log = EventLogEvidence(digest, data if i == 0 else None)
            body = ReportBody(
                host_id=host_id,
                boot_id="00" * 16,
                nonce=nonce,
                pcr_selection={TPM_ALG_SHA256: tuple(range(8))},
                pcr_values=values,
                eventlogs={"uefi": log},
                sequence=i,
            )
            body_bytes = encode_report_body(body)
            quote = device.quote(ak, SELECTION, report_qualifying_data(nonce, body_bytes))
            reports.append(Report(body_bytes, quote.attest, quote.signature))
        return ek.key.public, ak.public, reports


def best_rate(fn: Callable[[], int], rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


async def hub_rate(ek: bytes, ak: bytes, reports: list[Report], rounds: int) -> float:
    host_id = host_id_from_ek(ek)
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "hub.db")
        host = await store.register_host(
            host_id=host_id, state="approved", hostname="b", node_name=None, dmi_uuid=None, now=0
        )
        await store.complete_enrollment(
            HostKeys(host_id, ek, ak, None, None, ek_verified=False), HostFacts("b")
        )
        verifier = ReportVerifier(store, AttestationConfig())
        bodies = [r.body() for r in reports]
        best = 0.0
        for round_no in range(rounds):
            for body in bodies:
                await store.put_nonce(body.nonce, host_id, expires=1e12)
            start = time.perf_counter()
            for report, body in zip(reports, bodies, strict=True):
                out = await verifier.verify(host, report, body, {}, now=float(round_no))
                if not isinstance(out, Outcome) or out.verdict != "trusted":
                    raise SystemExit(f"unexpected outcome {out}")
            best = max(best, len(reports) / (time.perf_counter() - start))
            await store.execute_raw("DELETE FROM nonces")
        await store.close()
        return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub_verify")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ek, ak_public, reports = make_reports(args.reports)
    ak = AttestationKey.from_tpmt_public(ak_public)
    bodies = [r.body() for r in reports]

    def quote_only() -> int:
        for r, b in zip(reports, bodies, strict=True):
            verify_quote(
                ak,
                r.attest,
                r.signature,
                qualifying_data=report_qualifying_data(b.nonce, r.body_bytes),
                pcr_selection=SELECTION,
                pcr_values=b.pcr_values,
            )
        return len(reports)

    key = ak.key
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SystemExit("expected an ECC AK")
    sigs = []
    for r in reports:
        sig = parse_signature(r.signature)
        if not isinstance(sig, EccSignature):
            raise SystemExit("expected ECDSA signatures")
        der = encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
        sigs.append((r.attest, der))

    ecdsa = ec.ECDSA(hashes.SHA256())

    def bare() -> int:
        for attest, der in sigs:
            key.verify(der, attest, ecdsa)
        return len(sigs)

    result: dict[str, Any] = {
        "benchmark": "hub_verify",
        "reports": len(reports),
        "bare_ecdsa_per_s": round(best_rate(bare, args.rounds)),
        "quote_only_per_s": round(best_rate(quote_only, args.rounds)),
        "hub_per_s": round(asyncio.run(hub_rate(ek, ak_public, reports, args.rounds))),
    }
    result["hub_vs_bare"] = round(result["hub_per_s"] / result["bare_ecdsa_per_s"], 3)
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
