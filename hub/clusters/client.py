"""One cluster's API server, through kubernetes_asyncio: connection, authentication, requests.

kubernetes_asyncio's kubeconfig loader builds the connection (server, CA, client certificate,
bearer token, exec credential plugins with their refresh, in-cluster service account); requests
go through its ``ApiClient.call_api`` (so its authentication applies) with the body handled
here: nodes are read as plain JSON, not as generated model objects (a 5,000-node list decodes
in a fraction of the time), and a watch is read line by line with a bound on each line.

Only what the sync needs: list/get/watch nodes, server-side apply of our labels, a merge patch
of the taints guarded by ``resourceVersion`` (409 when the node changed meanwhile), and Events.
Inline certificate data in a kubeconfig is written by the loader to 0600 files in a private 0700
directory of this process (the loader hands OpenSSL file names).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from typing import Any, Final, Self
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import ConfigException
from kubernetes_asyncio.config.incluster_config import load_incluster_config
from kubernetes_asyncio.config.kube_config import KubeConfigLoader, refresh_token

from hub.clusters.errors import ApiServerError, KubeconfigError
from hub.clusters.kubeconfig import parse_kubeconfig
from hub.clusters.labels import EVENT_NAMESPACE, FIELD_MANAGER

MAX_LINE: Final = 8 * 1024 * 1024  # one watch event (etcd's own limit is 1.5 MiB per object)
MAX_BODY: Final = 512 * 1024 * 1024  # one answer (a list of many nodes)
POOL: Final = 64  # parallel connections per cluster
BIG: Final = 256 * 1024  # answers decoded off the event loop
_TEMP_DIR: str | None = None


def _temp_dir() -> str:
    global _TEMP_DIR  # noqa: PLW0603 - one private directory per process
    if _TEMP_DIR is None:
        _TEMP_DIR = tempfile.mkdtemp(prefix="trustplane-kube-")  # mode 0700
    return _TEMP_DIR


def _status_message(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
        message = str(doc.get("message", ""))
        reason = str(doc.get("reason", ""))
    except (ValueError, AttributeError):
        message, reason = "", ""
    text = f"HTTP {status}" + (f" {reason}" if reason else "") + (f": {message}" if message else "")
    return text[:400]


class KubeClient:
    """Requests to one API server; create with :meth:`connect`, end with :meth:`close`."""

    def __init__(self, api: ApiClient, refresher: asyncio.Task[None] | None = None) -> None:
        self._api = api
        self._refresher = refresher

    @classmethod
    async def connect(
        cls, kubeconfig: bytes | None, context: str | None, *, pool: int = POOL
    ) -> Self:
        """A client for ``kubeconfig`` (``None``: the pod's in-cluster service account)."""
        config = Configuration()
        refresher = None
        try:
            if kubeconfig is None:
                load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
            else:
                data = parse_kubeconfig(kubeconfig, context)
                loader = KubeConfigLoader(
                    config_dict=data,
                    config_base_path=None,
                    active_context=context,
                    temp_file_path=_temp_dir(),
                )
                await loader.load_and_set(config)
                user = loader._user  # the loader tells no other way whether a plugin is used
                if user is not None and "exec" in user:
                    refresher = asyncio.create_task(
                        refresh_token(loader, config), name="kube-token-refresh"
                    )
        except ConfigException as e:
            raise KubeconfigError(f"cannot use the kubeconfig: {str(e)[:300]}") from None
        config.connection_pool_maxsize = pool
        return cls(ApiClient(configuration=config), refresher)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._api.close()

    @contextlib.asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout = 30.0,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            response = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise ApiServerError(0, f"cannot reach the API server: {type(e).__name__}") from None
        try:
            yield response
        finally:
            response.release()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """The decoded JSON answer; raises :class:`ApiServerError` for any non-2xx."""
        try:
            async with self._response(
                method, path, query=query, body=body, content_type=content_type, timeout=timeout
            ) as response:
                data = await _read_body(response, MAX_BODY)
                if not 200 <= response.status <= 299:
                    raise ApiServerError(response.status, _status_message(response.status, data))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise ApiServerError(0, f"reading the answer failed: {type(e).__name__}") from None
        try:
            # a large answer (a page of a node list) is decoded on a thread: the event loop
            # keeps serving verdict changes meanwhile
            doc = await asyncio.to_thread(json.loads, data) if len(data) > BIG else json.loads(data)
        except ValueError:
            raise ApiServerError(response.status, "answer is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiServerError(response.status, "answer is not a JSON object")
        return doc

    async def list_nodes(self, *, timeout: float = 60.0) -> tuple[list[dict[str, Any]], str]:
        """Every node and the list's resourceVersion (pages of 500, as kubectl reads)."""
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            query = [("limit", "500")] + ([("continue", cont)] if cont else [])
            doc = await self.request("GET", "/api/v1/nodes", query=query, timeout=timeout)
            items.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
            meta = doc.get("metadata") or {}
            cont = str(meta.get("continue") or "")
            if not cont:
                return items, str(meta.get("resourceVersion") or "")

    async def get_node(self, name: str, *, timeout: float = 10.0) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/nodes/{quote(name, safe='')}", timeout=timeout)

    async def watch_nodes(
        self, resource_version: str, *, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` per watch event (ADDED, MODIFIED, DELETED, BOOKMARK; ERROR with a
        Status) until the server ends the watch."""
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout_seconds + 30)
        async with self._response("GET", "/api/v1/nodes", query=query, timeout=timeout) as r:
            if r.status != 200:
                data = await _read_body(r, 64 * 1024)
                raise ApiServerError(r.status, _status_message(r.status, data))
            buffer = b""
            try:
                async for chunk in r.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        event = _watch_event(line)
                        if event is not None:
                            yield event
                    if len(buffer) > MAX_LINE:
                        raise ApiServerError(0, "watch event too large")
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise ApiServerError(0, f"watch broken: {type(e).__name__}") from None
            event = _watch_event(buffer)
            if event is not None:
                yield event

    async def apply_node_metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> dict[str, Any]:
        """Server-side apply of exactly ``labels`` and ``annotations`` under our field manager
        (force): keys we applied before and leave out now are removed, others' are untouched."""
        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        return await self.request(
            "PATCH",
            f"/api/v1/nodes/{quote(name, safe='')}",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body={"apiVersion": "v1", "kind": "Node", "metadata": metadata},
            content_type="application/apply-patch+yaml",
        )

    async def set_node_taints(
        self, name: str, resource_version: str, taints: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Replace the node's taints if it is still at ``resource_version`` (else 409)."""
        return await self.request(
            "PATCH",
            f"/api/v1/nodes/{quote(name, safe='')}",
            query=[("fieldManager", FIELD_MANAGER)],
            body={
                "metadata": {"resourceVersion": resource_version},
                "spec": {"taints": taints or None},
            },
            content_type="application/merge-patch+json",
        )

    async def create_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return await self.request(
            "POST", f"/api/v1/namespaces/{EVENT_NAMESPACE}/events", body=event
        )


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused above ``limit`` bytes (a read returns what has arrived)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ApiServerError(0, "answer too large")
        parts.append(chunk)
    return b"".join(parts)


def _watch_event(line: bytes) -> tuple[str, dict[str, Any]] | None:
    line = line.strip()
    if not line:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        raise ApiServerError(0, "watch event is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
        raise ApiServerError(0, "watch event without an object")
    return str(doc.get("type", "")), doc["object"]
