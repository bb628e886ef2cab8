"""Quote verification throughput: trustcore vs tpm2-pytss, on the same swtpm quotes, one core.

``python -m bench.quote --json`` starts its own swtpm, extends PCRs 0-7 of the SHA-256 bank,
makes N quotes with an ECC P-256 AK over those 8 PCRs with distinct nonces, then measures full
verifications per second (signature, qualifying data, PCR selection, PCR digest):

- ours: :func:`trustcore.quote.verify_quote` with an :class:`AttestationKey` decoded once;
- tpm2_pytss: ``TPMS_ATTEST.unmarshal`` + ``TPMT_SIGNATURE.unmarshal`` +
  ``TPMT_SIGNATURE.verify_signature`` with the key converted once by tpm2-pytss (its best case),
  then the same nonce, selection and digest checks on the unmarshalled fields;
- bare_ecdsa: ``cryptography``'s ECDSA P-256 verify alone, DER signatures prepared in advance.

Each contender runs in several interleaved rounds of CPU time and the best round counts. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE
from tpm2_pytss.internal.crypto import public_to_key

from nodeagent.tpm import SignedAttestation, TpmDevice
from trustcore.algorithms import TPM_ALG_SHA256
from trustcore.quote import AttestationKey, verify_quote
from trustcore.tpm.pcrs import PcrSelection
from trustcore.tpm.signature import EccSignature, parse_signature
from trustplane.swtpm import SwtpmFactory

SELECTION = PcrSelection.of({TPM_ALG_SHA256: range(8)})


def make_quotes(
    count: int,
) -> tuple[bytes, dict[int, dict[int, bytes]], list[tuple[bytes, SignedAttestation]]]:
    """Quotes from a fresh swtpm: (AK TPMT_PUBLIC, PCR values, [(nonce, quote)])."""
    with SwtpmFactory() as factory:
        tpm = factory.start()
        with TpmDevice(tpm.tcti) as device:
            for pcr in range(8):
                device.pcr_extend(pcr, {TPM_ALG_SHA256: hashlib.sha256(b"bench %d" % pcr).digest()})
            ak, _ = device.create_ak("ecc256")
            values = device.pcr_read(SELECTION)
            quotes = []
            for i in range(count):
                nonce = hashlib.sha256(b"nonce %d" % i).digest()
                quotes.append((nonce, device.quote(ak, SELECTION, nonce)))
            return ak.public, values, quotes


def measure(run_once: Callable[[], int], seconds: float) -> float:
    """Verifications per CPU second of ``run_once`` (which returns how many it verified).

    CPU time of this process, not wall time: on a shared machine, time spent waiting for the
    core is not the verifier's cost."""
    done = 0
    start = time.process_time()
    while True:
        done += run_once()
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def contenders(
    ak_public: bytes,
    values: dict[int, dict[int, bytes]],
    quotes: list[tuple[bytes, SignedAttestation]],
) -> dict[str, Callable[[], int]]:
    ak = AttestationKey.from_tpmt_public(ak_public)

    def ours() -> int:
        for nonce, q in quotes:
            verify_quote(
                ak,
                q.attest,
                q.signature,
                qualifying_data=nonce,
                pcr_selection=SELECTION,
                pcr_values=values,
            )
        return len(quotes)

    tpm_public, _ = TPM2B_PUBLIC.unmarshal(len(ak_public).to_bytes(2, "big") + ak_public)
    tpm_key = public_to_key(tpm_public.publicArea)
    selection_wire = SELECTION.marshal()
    pcr_bytes = b"".join(values[TPM_ALG_SHA256][pcr] for pcr in range(8))

    def tpm2_pytss() -> int:
        for nonce, q in quotes:
            attest, _ = TPMS_ATTEST.unmarshal(q.attest)
            signature, _ = TPMT_SIGNATURE.unmarshal(q.signature)
            signature.verify_signature(tpm_key, q.attest)
            quote_info = attest.attested.quote
            ok = (
                bytes(attest.extraData) == nonce
                and quote_info.pcrSelect.marshal() == selection_wire
                and hashlib.sha256(pcr_bytes).digest() == bytes(quote_info.pcrDigest)
            )
            if not ok:
                raise SystemExit("tpm2-pytss baseline rejected a good quote")
        return len(quotes)

    bare_key = ak.key
    assert isinstance(bare_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())
    prepared = []
    for _, q in quotes:
        sig = parse_signature(q.signature)
        assert isinstance(sig, EccSignature)
        der = encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
        prepared.append((der, q.attest))

    def bare_ecdsa() -> int:
        for der, data in prepared:
            bare_key.verify(der, data, algorithm)
        return len(prepared)

    return {"ours": ours, "tpm2_pytss": tpm2_pytss, "bare_ecdsa": bare_ecdsa}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--quotes", type=int, default=200, help="quotes to make with swtpm")
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per contender")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    ak_public, values, quotes = make_quotes(args.quotes)
    runs = contenders(ak_public, values, quotes)
    best: dict[str, float] = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = max(best[name], measure(run, args.seconds))
    result: dict[str, Any] = {
        "ours_per_s": round(best["ours"]),
        "tpm2_pytss_per_s": round(best["tpm2_pytss"]),
        "speedup": round(best["ours"] / best["tpm2_pytss"], 2),
        "bare_ecdsa_per_s": round(best["bare_ecdsa"]),
        "ours_vs_bare_ecdsa": round(best["ours"] / best["bare_ecdsa"], 3),
        "quotes": len(quotes),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
