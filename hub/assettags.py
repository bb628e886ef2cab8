"""Asset tags: issuing a host's tag certificate and handing it to its agent.

:func:`set_host_tags` checks the tags, issues the tag certificate
(:func:`hub.pki.issue_tag_certificate`, signed by the tag CA ``init`` made), stores tags and
certificate together and audits the change. The CLI (``trustplane-hub tags set``) and
``PUT /v1/hosts/{id}/tags`` (admin) both call it; an empty tag set removes the certificate.
The agent gets the certificate in the next ``ReportResult`` (``tag_certificate``, when its
report did not carry the current one) or from ``POST /v1/tags`` (mTLS). What the hub checks in
each report is :meth:`hub.verification.ReportVerifier._asset_tags`
(:func:`trustcore.assettag.verify_asset_tag`).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from hub.auth import agent, principal, role
from hub.errors import ApiError, read_json
from hub.pki import CertifiedKey, issue_tag_certificate
from hub.state import STATE
from hub.store import Store
from trustcore.assettag import AssetTagError, check_tags, tag_certificate_digest
from trustcore.wire import PROTOCOL_VERSION, b64

TAGS_BODY_LIMIT: Final = 16 * 1024


class UnknownHost(Exception):
    """No such host."""


async def set_host_tags(
    store: Store,
    tag_ca: CertifiedKey,
    host_id: str,
    tags: dict[str, str],
    *,
    now: float,
    actor: str,
) -> bytes | None:
    """Issue and store ``host_id``'s tag certificate for ``tags`` (none for ``{}``); returns its
    DER. Raises :class:`UnknownHost` and :class:`~trustcore.assettag.AssetTagError`."""
    checked = check_tags(tags)
    if await store.get_host(host_id) is None:
        raise UnknownHost(host_id)
    der = None
    if checked:
        cert = issue_tag_certificate(tag_ca, host_id, checked, now)
        der = cert.public_bytes(serialization.Encoding.DER)
    await store.set_tag_certificate(host_id, checked, der, now)
    await store.audit(
        at=now,
        actor=actor,
        action="host.tags",
        subject=host_id,
        details={
            "tags": checked,
            "certificate_sha384": None if der is None else tag_certificate_digest(der).hex(),
        },
    )
    return der


def tags_answer(host_id: str, tags: dict[str, str], der: bytes | None) -> dict[str, object]:
    """The JSON both endpoints answer with (``type: tag_certificate``)."""
    return {
        "type": "tag_certificate",
        "version": PROTOCOL_VERSION,
        "host_id": host_id,
        "tags": tags,
        "certificate": None if der is None else b64(der),
        "sha384": None if der is None else tag_certificate_digest(der).hex(),
    }


@role("admin")
async def put_tags(request: web.Request) -> web.Response:
    """``{"tags": {"region": "EU"}}`` -> the issued certificate; ``{}`` tags remove it."""
    st = request.app[STATE]
    host_id = request.match_info["host_id"]
    body = await read_json(request, TAGS_BODY_LIMIT)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, dict):
        raise ApiError(400, "assettag.tags_invalid", 'expected {"tags": {"key": "value"}}')
    try:
        der = await set_host_tags(
            st.store,
            st.keys.tag_ca,
            host_id,
            tags,
            now=st.clock(),
            actor=f"token:{principal(request).name}",
        )
    except AssetTagError as e:
        raise ApiError(400, e.reason, e.message) from None
    except UnknownHost:
        raise ApiError(404, "host.unknown", "no such host") from None
    return web.json_response(tags_answer(host_id, check_tags(tags), der))


@agent
async def get_tags(request: web.Request) -> web.Response:
    """The calling host's tags and current tag certificate (``certificate`` null: none).
    A POST like every agent call (body ``{}`` or empty)."""
    st = request.app[STATE]
    if request.can_read_body:
        await read_json(request, TAGS_BODY_LIMIT)
    host_id = principal(request).host_id
    host = await st.store.get_host(host_id)
    if host is None:
        raise ApiError(403, "host.unknown", "this host is not enrolled")
    der = await st.store.get_tag_certificate(host_id)
    return web.json_response(tags_answer(host_id, dict(host.tags) if der else {}, der))


def add_routes(app: web.Application) -> None:
    app.router.add_put("/v1/hosts/{host_id}/tags", put_tags)
    app.router.add_post("/v1/tags", get_tags)
