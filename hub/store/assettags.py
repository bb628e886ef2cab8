"""Each host's asset tags with its current tag certificate."""

from __future__ import annotations

import hashlib
import json

from hub.store.backend import SqliteBackend


class AssetTagsStore(SqliteBackend):
    """The asset tags' methods."""

    async def set_tag_certificate(
        self, host_id: str, tags: dict[str, str], der: bytes | None, now: float
    ) -> None:
        """Set the host's tags and its current tag certificate together (``der`` None: no
        tags, no certificate)."""

        def run() -> None:
            with self.db.atomic():
                self._t("hosts").update(host_id, {"tags": json.dumps(tags, sort_keys=True)})
                self.db.execute("DELETE FROM tag_certificates WHERE host_id = ?", [host_id])
                if der is not None:
                    self._t("tag_certificates").insert(
                        {
                            "host_id": host_id,
                            "der": der,
                            "sha384": hashlib.sha384(der).hexdigest(),
                            "issued": now,
                        }
                    )

        await self._run(run)

    async def get_tag_certificate(self, host_id: str) -> bytes | None:
        """The host's current tag certificate (DER), or ``None``."""

        def run() -> bytes | None:
            rows = list(self._t("tag_certificates").rows_where("host_id = ?", [host_id]))
            return bytes(rows[0]["der"]) if rows else None

        return await self._run(run)
