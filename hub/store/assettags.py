"""Each host's asset tags with its current tag certificate."""

from __future__ import annotations

import hashlib
import json

from hub.store.backend import StoreBackend


class AssetTagsStore(StoreBackend):
    """The asset tags' methods."""

    async def set_tag_certificate(
        self, host_id: str, tags: dict[str, str], der: bytes | None, now: float
    ) -> None:
        """Set the host's tags and its current tag certificate together (``der`` None: no
        tags, no certificate)."""

        def run() -> None:
            with self.db.atomic():
                self.db.execute(
                    "UPDATE hosts SET tags = ? WHERE id = ?",
                    [json.dumps(tags, sort_keys=True), host_id],
                )
                self.db.execute("DELETE FROM tag_certificates WHERE host_id = ?", [host_id])
                if der is not None:
                    self.db.execute(
                        "INSERT INTO tag_certificates (host_id, der, sha384, issued) "
                        "VALUES (?, ?, ?, ?)",
                        [host_id, der, hashlib.sha384(der).hexdigest(), now],
                    )

        await self._run(run)

    async def get_tag_certificate(self, host_id: str) -> bytes | None:
        """The host's current tag certificate (DER), or ``None``."""

        def run() -> bytes | None:
            row = self.db.execute(
                "SELECT der FROM tag_certificates WHERE host_id = ?", [host_id]
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(run)
