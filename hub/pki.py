"""The hub's X.509 side: its CA, server and agent certificates, and EK certificate checks.

Everything here works on ``cryptography`` objects and bytes; reading and writing the files in the
state directory is :mod:`hub.state`'s job. Times come in as parameters (``now``).

EK certificates are checked the way TCG EK certificates need: the signature chain up to a
configured CA, each certificate's validity period, and that the certificate's public key is the
EK public key the agent sent. Unknown critical extensions (TPM-specific SAN directory names, the
TCG subject directory attributes) are not grounds for refusal: path-building libraries that insist
on understanding every critical extension reject real EK certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustcore.assettag import TAG_EXTENSION_OID, encode_tags_extension

MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class PkiError(Exception):
    """A certificate or CSR that cannot be used; ``reason`` is a stable id."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trustplane"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str, now: float, *, days: int = 3650) -> CertifiedKey:
    """A self-signed EC P-256 CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - 300))
        .not_valid_after(_utc(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(key, cert)


def _leaf(  # noqa: PLR0917 - internal builder
    ca: CertifiedKey,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    now: float,
    days: int,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - 300))
        .not_valid_after(_utc(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def make_server_certificate(
    ca: CertifiedKey, hostnames: Sequence[str], now: float, *, days: int = 825
) -> CertifiedKey:
    """A TLS server certificate for ``hostnames`` plus localhost and 127.0.0.1."""
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in [*hostnames, "localhost", "127.0.0.1"]:
        if host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        ca,
        _name(hostnames[0] if hostnames else "localhost"),
        key.public_key(),
        now,
        days,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(names),
    )
    return CertifiedKey(key, cert)


def check_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """Decode a PEM CSR whose signature verifies and whose key is EC P-256/P-384/P-521 or RSA
    of at least 2048 bits. Raises :class:`PkiError` (``enroll.csr_invalid``)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise PkiError(
            "the CSR is not a PEM certificate request", reason="enroll.csr_invalid"
        ) from None
    if not csr.is_signature_valid:
        raise PkiError("the CSR's signature does not verify", reason="enroll.csr_invalid")
    public_key = csr.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise PkiError(f"curve {public_key.curve.name} refused", reason="enroll.csr_invalid")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise PkiError("RSA key shorter than 2048 bits", reason="enroll.csr_invalid")
    else:
        raise PkiError("CSR key must be EC or RSA", reason="enroll.csr_invalid")
    return csr


def issue_client_certificate(
    ca: CertifiedKey, csr_pem: str, host_id: str, now: float, *, days: int = 30
) -> x509.Certificate:
    """An agent's mTLS certificate (CN = host_id) for the key in ``csr_pem``.

    The CSR's own subject is ignored. Raises :class:`PkiError` (``enroll.csr_invalid``).
    """
    public_key = check_csr(csr_pem).public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PkiError("CSR key must be EC or RSA", reason="enroll.csr_invalid")
    return _leaf(ca, _name(host_id), public_key, now, days, ExtendedKeyUsageOID.CLIENT_AUTH, None)


def issue_tag_certificate(
    tag_ca: CertifiedKey, host_id: str, tags: Mapping[str, str], now: float, *, days: int = 3650
) -> x509.Certificate:
    """A host's asset-tag certificate: subject CN = ``host_id``, the tags in the extension
    :data:`trustcore.assettag.TAG_EXTENSION_OID` (non-critical), signed by the tag CA. Its
    public key is a throwaway (the certificate attests attributes, it authenticates nothing).

    Raises :class:`trustcore.assettag.AssetTagError` for tags that cannot be issued.
    """
    value = encode_tags_extension(tags)
    throwaway = ec.generate_private_key(ec.SECP256R1()).public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(host_id))
        .issuer_name(tag_ca.certificate.subject)
        .public_key(throwaway)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - 300))
        .not_valid_after(_utc(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.UnrecognizedExtension(TAG_EXTENSION_OID, value), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(tag_ca.key.public_key()),
            critical=False,
        )
        .sign(tag_ca.key, hashes.SHA256())
    )


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_ca_bundle(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; raises :class:`PkiError` when there is none."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise PkiError("not a PEM certificate bundle", reason="config.ca_bundle_invalid") from None
    return certs


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    algo = cert.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(key, rsa.RSAPublicKey) and algo is not None:
            pad = cert.signature_algorithm_parameters
            key.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                pad if isinstance(pad, padding.PSS) else padding.PKCS1v15(),
                algo,
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _valid_at(cert: x509.Certificate, now: float) -> bool:
    t = _utc(now)
    return cert.not_valid_before_utc <= t <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return cert.issuer == cert.subject  # v1 self-signed roots
    return bc.ca


def verify_ek_certificate(
    ek_cert_der: bytes,
    ek_public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    anchors: Sequence[x509.Certificate],
    now: float,
) -> None:
    """Check an EK certificate chains to ``anchors`` and certifies ``ek_public_key``.

    ``anchors`` holds roots and intermediates alike (a vendor bundle): every certificate in it
    is trusted as configured, so the EK certificate must be signed by one of them. Raises
    :class:`PkiError` with ``enroll.ek_certificate_invalid`` (undecodable, expired, wrong key) or
    ``enroll.ek_certificate_untrusted`` (no chain to the bundle).
    """
    try:
        cert = x509.load_der_x509_certificate(ek_cert_der)
    except ValueError:
        try:
            cert = x509.load_pem_x509_certificate(ek_cert_der)
        except ValueError:
            raise PkiError(
                "EK certificate is not DER or PEM", reason="enroll.ek_certificate_invalid"
            ) from None
    if not _valid_at(cert, now):
        raise PkiError(
            "EK certificate is outside its validity", reason="enroll.ek_certificate_invalid"
        )
    pub = _der_public(cert)
    want = ek_public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != want:
        raise PkiError("EK certificate is for another key", reason="enroll.ek_certificate_invalid")
    if not any(_is_ca(a) and _valid_at(a, now) and _signed_by(cert, a) for a in anchors):
        raise PkiError(
            "EK certificate is not signed by a CA in the configured bundle",
            reason="enroll.ek_certificate_untrusted",
        )


def _der_public(cert: x509.Certificate) -> bytes:
    try:
        key = cert.public_key()
    except ValueError:
        raise PkiError(
            "EK certificate key unreadable", reason="enroll.ek_certificate_invalid"
        ) from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def client_identity(cert: x509.Certificate) -> str | None:
    """The host id in an agent certificate's subject CN, or ``None``."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else None
