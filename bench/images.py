"""Benchmark: ocicrypt layer encryption and decryption (trustcore.ocicrypt), streamed in chunks.

``python -m bench.images --json`` encrypts and decrypts a layer of ``--mib`` MiB of random bytes
in 64 KiB chunks, as ``trustplane image encrypt|decrypt`` streams a layer, and measures the CPU
time per MiB (median of ``--repeat`` runs). The baseline, in the same run on the same bytes, is
the same work done in one shot with the same primitives (one AES-256-CTR call, one HMAC-SHA256,
one SHA-256): ``*_ratio`` is ours over it, the cost of streaming with bounded memory plus the
plaintext digest ocicrypt needs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trustcore.ocicrypt import LayerDecryptor, LayerEncryptor

CHUNK = 64 * 1024
MIB = 1024 * 1024


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.process_time_ns()
        fn()
        samples.append(time.process_time_ns() - start)
    return statistics.median(samples) / 1e6


def run(mib: int, repeat: int) -> dict[str, object]:
    data = os.urandom(mib * MIB)
    key, nonce = os.urandom(32), os.urandom(16)
    enc = LayerEncryptor(key, nonce)
    ciphertext = b"".join(enc.update(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK))
    private, public, _ = enc.finish()

    def encrypt() -> None:
        e = LayerEncryptor(key, nonce)
        for i in range(0, len(data), CHUNK):
            e.update(data[i : i + CHUNK])
        e.finish()

    def decrypt() -> None:
        d = LayerDecryptor(private, public)
        for i in range(0, len(ciphertext), CHUNK):
            d.update(ciphertext[i : i + CHUNK])
        d.finish()

    def baseline() -> None:
        ct = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(data)
        hmac.new(key, ct, hashlib.sha256).digest()
        hashlib.sha256(data).digest()

    ours_enc, ours_dec, base = (cpu_ms(f, repeat) for f in (encrypt, decrypt, baseline))
    return {
        "layer_mib": mib,
        "chunk_bytes": CHUNK,
        "encrypt_cpu_ms_per_mib": round(ours_enc / mib, 3),
        "decrypt_cpu_ms_per_mib": round(ours_dec / mib, 3),
        "baseline": "one-shot AES-256-CTR + HMAC-SHA256 + SHA-256 (cryptography, hashlib)",
        "baseline_cpu_ms_per_mib": round(base / mib, 3),
        "encrypt_ratio": round(ours_enc / base, 3),
        "decrypt_ratio": round(ours_dec / base, 3),
        "repeat": repeat,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default)")
    parser.add_argument("--mib", type=int, default=32, help="layer size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run(args.mib, args.repeat)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
