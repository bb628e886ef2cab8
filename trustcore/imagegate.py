"""The pipeline gate's verdict on an image: is every layer encrypted for the trustplane provider?

Policy 3 of the mission: an image reaches a registry only encrypted, so that only hosts the hub
attests can run it. :func:`check_layers` looks at a manifest's layer descriptors (no blob is
read) and gives one :class:`LayerVerdict` per layer: passing only when the layer's media type is
``+encrypted``, it uses ocicrypt's ``AES_256_CTR_HMAC_SHA256`` layer cipher, it carries a
well-formed trustplane key blob (:func:`trustcore.keyblob.parse_key_blob`, whose key id, policy
and hub are public and shown), and no other recipient could decrypt it (a second key provider,
JWE, PKCS#7 or PGP key beside ours would let a host decrypt without attestation). An image
without layers fails too: a gate that passes nothing is not a pass.

Reason ids: ``image.no_layers``, ``image.layer_plain``, ``image.layer_other_provider``,
``image.layer_extra_recipient``, ``image.key_blob_invalid``, ``image.pubopts_invalid``,
``image.cipher_unsupported``. A verdict, not an error: the CLI prints it and sets its exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from trustcore.keyblob import KeyBlobError, parse_key_blob
from trustcore.oci import Descriptor
from trustcore.ocicrypt import (
    PUBOPTS_ANNOTATION,
    OcicryptError,
    encryption_schemes,
    is_encrypted_media_type,
    parse_public_options,
    wrapped_keys,
)

PROVIDER: Final = "trustplane"


@dataclass(frozen=True)
class LayerVerdict:
    """One layer: ``ok`` with the key's public identity, or a reason id and a sentence."""

    index: int
    digest: str
    media_type: str
    ok: bool
    reason: str | None = None
    message: str = ""
    key_id: str | None = None
    policy: str | None = None
    hub: str | None = None


@dataclass(frozen=True)
class ImageVerdict:
    ok: bool
    layers: tuple[LayerVerdict, ...]
    reason: str | None = None
    message: str = ""


def _refuse(index: int, layer: Descriptor, reason: str, message: str) -> LayerVerdict:
    return LayerVerdict(
        index, layer.digest, layer.media_type, ok=False, reason=reason, message=message
    )


def check_layer(index: int, layer: Descriptor, provider: str = PROVIDER) -> LayerVerdict:
    """The verdict on one layer descriptor (``index`` counts from 1)."""
    if not is_encrypted_media_type(layer.media_type):
        return _refuse(index, layer, "image.layer_plain", "layer is not encrypted")
    schemes = encryption_schemes(layer.annotations)
    ours = "provider." + provider
    if ours not in schemes:
        return _refuse(
            index,
            layer,
            "image.layer_other_provider",
            f"layer is encrypted for {', '.join(schemes) or 'no known key'}, not for {provider}",
        )
    others = [s for s in schemes if s != ours]
    if others:
        return _refuse(
            index,
            layer,
            "image.layer_extra_recipient",
            f"layer can also be decrypted with {', '.join(others)}, without attestation",
        )
    try:
        parse_public_options(layer.annotations.get(PUBOPTS_ANNOTATION, ""))
    except OcicryptError as e:
        reason = (
            "image.cipher_unsupported"
            if e.reason == "ocicrypt.cipher_unsupported"
            else ("image.pubopts_invalid")
        )
        return _refuse(index, layer, reason, e.message)
    try:
        blob = parse_key_blob(wrapped_keys(layer.annotations)[provider])
    except (OcicryptError, KeyBlobError) as e:
        return _refuse(index, layer, "image.key_blob_invalid", f"trustplane key blob: {e.message}")
    return LayerVerdict(
        index,
        layer.digest,
        layer.media_type,
        ok=True,
        key_id=blob.key_id,
        policy=blob.policy,
        hub=blob.hub,
    )


def check_layers(layers: Sequence[Descriptor], provider: str = PROVIDER) -> ImageVerdict:
    """The verdict on an image's layers: ok only if there is at least one and all pass."""
    verdicts = tuple(check_layer(i + 1, layer, provider) for i, layer in enumerate(layers))
    if not verdicts:
        return ImageVerdict(False, verdicts, "image.no_layers", "the image has no layers")
    bad = [v for v in verdicts if not v.ok]
    if bad:
        return ImageVerdict(
            False,
            verdicts,
            bad[0].reason,
            f"{len(bad)} of {len(verdicts)} layers are not encrypted for {provider}",
        )
    return ImageVerdict(
        True, verdicts, None, f"all {len(verdicts)} layers are encrypted for {provider}"
    )
