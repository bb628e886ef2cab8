"""trustplane.swtpm: real swtpm processes with EK certificates from the factory's local CA."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from tpm2_pytss import ESAPI, TCTILdr

from trustplane.swtpm import SwtpmFactory

RSA_EK_CERT_NV = 0x01C00002


def read_ek_certificate(tcti: str) -> x509.Certificate:
    with TCTILdr.parse(tcti) as t, ESAPI(t) as esys:
        handle = esys.tr_from_tpmpublic(RSA_EK_CERT_NV)
        public, _ = esys.nv_read_public(handle)
        size = public.nvPublic.dataSize
        data = b""
        while len(data) < size:
            chunk = esys.nv_read(handle, min(512, size - len(data)), len(data))
            data += bytes(chunk)
    return x509.load_der_x509_certificate(data)


def test_copies_share_an_ek_and_unique_tpms_do_not(swtpm_factory: SwtpmFactory) -> None:
    a = swtpm_factory.start()
    b = swtpm_factory.start()
    c = swtpm_factory.start(unique=True)
    try:
        certs = [read_ek_certificate(t.tcti) for t in (a, b, c)]
        keys = [cert.public_key().public_numbers() for cert in certs]  # type: ignore[union-attr]
        assert keys[0] == keys[1]
        assert keys[2] != keys[0]
        issuer = x509.load_pem_x509_certificate(swtpm_factory.ca_certificates[1].read_bytes())
        for cert in certs:
            cert.verify_directly_issued_by(issuer)
    finally:
        for t in (a, b, c):
            t.stop()


def test_stop_frees_the_port(swtpm_factory: SwtpmFactory) -> None:
    tpm = swtpm_factory.start()
    port = tpm.port
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    tpm.stop()
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_tpm_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A demo or test killed outright (SIGKILL) leaves no swtpm behind."""
    script = (
        "import sys, time\n"
        "from trustplane.swtpm import SwtpmFactory\n"
        "from pathlib import Path\n"
        f'f = SwtpmFactory(Path({str(tmp_path)!r}) / "tpm")\n'
        "t = f.start()\n"
        "print(t.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        os.kill(pid, 0)  # running
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists()
    finally:
        if parent.poll() is None:
            parent.kill()
