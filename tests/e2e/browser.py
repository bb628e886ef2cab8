"""Headless Chromium for end-to-end tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Playwright never downloads a browser here: it is given ``executable_path``. Every launch gets a
fresh profile directory and the flags that keep Chromium off the network (no component
updates, no sync, no background requests). The hub's certificate is trusted by pinning its
public key (``--ignore-certificate-errors-spki-list``), so TLS is still verified for every
other certificate.

Use::

    with open_chromium(tmp_path, trust=[hub_cert_pem]) as page:
        page.goto(url)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, sync_playwright

CHROMIUM: Final = Path("/usr/bin/chromium")
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def spki_pin(cert_pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) as Chromium's SPKI list wants it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextmanager
def open_chromium(
    workdir: Path, *, trust: Sequence[bytes] = (), width: int = 1280, height: int = 800
) -> Iterator[Page]:
    """A page in a fresh headless Chromium profile under ``workdir``; closed on exit.

    ``trust`` holds PEM certificates whose public keys Chromium accepts for TLS. Fails (does
    not skip) when Debian's chromium is not installed.
    """
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    flags = list(FLAGS)
    if trust:
        flags.append("--ignore-certificate-errors-spki-list=" + ",".join(map(spki_pin, trust)))
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=flags,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15000)
            yield page
        finally:
            context.close()
