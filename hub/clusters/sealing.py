"""Kubeconfigs at rest: sealed with a key derived from the hub's master key (AES-256-GCM).

A kubeconfig holds credentials to a cluster (client keys, bearer tokens), so the database keeps
only ``b"tpkc1" || nonce(12) || ciphertext+tag``, with the cluster's name as associated data (a
sealed blob copied to another cluster's row does not open). The key is HKDF-SHA256 of the master
key (``state.dir/master.key`` or systemd's credential) with its own ``info``, so it is never the
key of any other use of the master key. The clear text lives only in memory while a client is
built; it is never logged and never part of an API answer.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.clusters.errors import KubeconfigError

MAGIC: Final = b"tpkc1"
_INFO: Final = b"trustplane hub: cluster kubeconfig sealing v1"
MAX_KUBECONFIG_BYTES: Final = 1024 * 1024


def _key(master_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=_INFO).derive(master_key)


def seal(master_key: bytes, cluster: str, kubeconfig: bytes) -> bytes:
    if len(kubeconfig) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(f"kubeconfig larger than {MAX_KUBECONFIG_BYTES} bytes")
    nonce = os.urandom(12)
    return MAGIC + nonce + AESGCM(_key(master_key)).encrypt(nonce, kubeconfig, cluster.encode())


def unseal(master_key: bytes, cluster: str, sealed: bytes) -> bytes:
    """The kubeconfig; raises :class:`KubeconfigError` for a blob this key did not seal for
    ``cluster``."""
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + 12 + 16:
        raise KubeconfigError("stored kubeconfig is not sealed", "cluster.kubeconfig_sealed")
    nonce = sealed[len(MAGIC) : len(MAGIC) + 12]
    try:
        return AESGCM(_key(master_key)).decrypt(nonce, sealed[len(MAGIC) + 12 :], cluster.encode())
    except InvalidTag:
        raise KubeconfigError(
            "stored kubeconfig does not open with this hub's master key",
            "cluster.kubeconfig_sealed",
        ) from None
