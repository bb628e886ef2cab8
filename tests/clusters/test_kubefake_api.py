"""The fake API server's own contract, in process: what the shared checks cannot exercise on a
real cluster (bookmarks on demand, 410 after compaction, pagination, selectors, the fault
hooks, request counts, authentication, garbage input) and the patch flavours at the HTTP
level. Expected values are the Kubernetes API's documented behaviour.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch

from tests.clusters.kubechecks import api_client
from tests.kubefake import FakeApiServer

Body = Callable[[FakeApiServer, client.CoreV1Api, "Raw"], Awaitable[None]]


class Raw:
    """Plain HTTPS requests to the fake with its admin client certificate (or none)."""

    def __init__(self, api: FakeApiServer, session: aiohttp.ClientSession) -> None:
        self.api = api
        self.session = session
        self.ctx = ssl.create_default_context(cafile=str(api.authority.ca_file))
        self.ctx.load_cert_chain(str(api.admin_cert.cert), str(api.admin_cert.key))
        self.anon = ssl.create_default_context(cafile=str(api.authority.ca_file))

    async def __call__(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        ctype: str = "application/json",
        anonymous: bool = False,
    ) -> tuple[int, Any]:
        data = body.encode() if isinstance(body, str) else body
        async with self.session.request(
            method,
            self.api.url + path,
            data=data,
            headers={"Content-Type": ctype},
            ssl=self.anon if anonymous else self.ctx,
        ) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw


def run(body: Body, tmp_path: Path, **options: Any) -> None:
    async def main() -> None:
        async with FakeApiServer(**options) as api:
            kubeconfig = api.write_kubeconfig(tmp_path / "kc")
            async with await api_client(kubeconfig) as ac, aiohttp.ClientSession() as session:
                await body(api, client.CoreV1Api(ac), Raw(api, session))

    asyncio.run(main())


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def test_create_adds_not_ready_taint_and_creator_owns_what_it_sent(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        code, made = await raw(
            "POST", "/api/v1/nodes?fieldManager=maker", json.dumps(node("n1", {"a": "1"}))
        )
        assert code == 201
        assert made["spec"]["taints"] == [
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
        ]
        assert [
            (m["manager"], m["operation"], m["fieldsV1"]) for m in made["metadata"]["managedFields"]
        ] == [("maker", "Update", {"f:metadata": {"f:labels": {"f:a": {}}}})]
        code, again = await raw("POST", "/api/v1/nodes", json.dumps(node("n1")))
        assert (code, again["reason"], again["message"]) == (
            409,
            "AlreadyExists",
            'nodes "n1" already exists',
        )
        code, missing = await raw("GET", "/api/v1/nodes/nope")
        assert (code, missing) == (
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'nodes "nope" not found',
                "reason": "NotFound",
                "details": {"name": "nope", "kind": "nodes"},
                "code": 404,
            },
        )

    run(body, tmp_path)


def test_watch_bookmarks_and_resume(tmp_path: Path) -> None:
    """With allowWatchBookmarks the server sends BOOKMARKs carrying only a resourceVersion; a
    watch resumed from it sees only what came after."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="a")))
        start = (await v1.list_node()).metadata.resource_version
        bookmark = None
        async for ev in watch.Watch().stream(
            v1.list_node, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=2
        ):
            assert ev["type"] == "BOOKMARK"
            bookmark = ev["raw_object"]
            break
        assert bookmark == {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": start, "creationTimestamp": None},
        }
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="b")))
        seen = []
        async for ev in watch.Watch().stream(
            v1.list_node,
            resource_version=bookmark["metadata"]["resourceVersion"],
            timeout_seconds=1,
        ):
            seen.append((ev["type"], ev["object"].metadata.name))
        assert seen == [("ADDED", "b")]

    run(body, tmp_path, bookmark_interval=0.2)


def test_watch_too_old_resource_version_is_410_expired(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        for name in ("a", "b", "c", "d"):
            await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
        # history of 2 events: resourceVersions 2 and 3 are gone, 4 is the oldest kept change
        with pytest.raises(client.ApiException) as caught:
            async for _ev in watch.Watch().stream(
                v1.list_node, resource_version="2", timeout_seconds=1
            ):
                pass
        assert caught.value.status == 410
        code, text = await raw("GET", "/api/v1/nodes?watch=1&resourceVersion=2&timeoutSeconds=1")
        assert code == 200
        assert isinstance(text, dict)
        assert text == {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "too old resource version: 2 (3)",
                "reason": "Expired",
                "code": 410,
            },
        }
        api.store.compact()
        with pytest.raises(client.ApiException) as caught:
            async for _ev in watch.Watch().stream(
                v1.list_node, resource_version="4", timeout_seconds=1
            ):
                pass
        assert caught.value.status == 410

    run(body, tmp_path, history_size=2)


def test_watch_selector_moves_objects_in_and_out(tmp_path: Path) -> None:
    """A node whose labels stop matching a watch's selector is DELETED for that watch, and
    ADDED when it matches again (as the API server's watch cache filters)."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(
            client.V1Node(metadata=client.V1ObjectMeta(name="m", labels={"pick": "yes"}))
        )
        start = (await v1.list_node()).metadata.resource_version
        await v1.patch_node("m", {"metadata": {"labels": {"pick": "no"}}})
        await v1.patch_node("m", {"metadata": {"labels": {"pick": "yes", "x": "1"}}})
        await v1.patch_node("m", {"metadata": {"labels": {"x": "2"}}})
        seen = []
        async for ev in watch.Watch().stream(
            v1.list_node, label_selector="pick in (yes)", resource_version=start, timeout_seconds=1
        ):
            seen.append((ev["type"], dict(ev["object"].metadata.labels)))
        assert seen == [
            ("DELETED", {"pick": "yes"}),
            ("ADDED", {"pick": "yes", "x": "1"}),
            ("MODIFIED", {"pick": "yes", "x": "2"}),
        ]

    run(body, tmp_path)


def test_list_pagination_and_selectors(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        for i in range(5):
            labels = {"zone": f"z{i % 2}"} if i < 4 else {}
            await v1.create_node(
                client.V1Node(metadata=client.V1ObjectMeta(name=f"n{i}", labels=labels))
            )
        pages, token, remaining = [], None, []
        while True:
            page = await v1.list_node(limit=2, _continue=token)
            pages.append([n.metadata.name for n in page.items])
            remaining.append(page.metadata.remaining_item_count)
            token = page.metadata._continue
            if not token:
                break
        assert pages == [["n0", "n1"], ["n2", "n3"], ["n4"]]
        assert remaining == [3, 1, None]

        async def names(**kw: Any) -> list[str]:
            return [n.metadata.name for n in (await v1.list_node(**kw)).items]

        assert await names(label_selector="zone=z0") == ["n0", "n2"]
        assert await names(label_selector="zone!=z0") == ["n1", "n3", "n4"]
        assert await names(label_selector="zone notin (z0)") == ["n1", "n3", "n4"]
        assert await names(label_selector="zone") == ["n0", "n1", "n2", "n3"]
        assert await names(label_selector="!zone") == ["n4"]
        assert await names(label_selector="zone in (z0,z1),zone!=z1") == ["n0", "n2"]
        assert await names(field_selector="metadata.name=n3") == ["n3"]
        assert await names(field_selector="metadata.name!=n3", label_selector="zone=z1") == ["n1"]
        first = await v1.list_node(limit=2)
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n5")))
        api.store.compact()  # the list's revision is compacted away
        code, gone = await raw("GET", f"/api/v1/nodes?limit=2&continue={first.metadata._continue}")
        assert (code, gone["reason"]) == (410, "Expired")
        assert gone["message"].startswith(
            "The provided continue parameter is too old to display a consistent list result."
        )
        code, bad = await raw("GET", "/api/v1/nodes?fieldSelector=spec.podCIDR%3Dx")
        assert (code, bad["reason"], bad["message"]) == (
            400,
            "BadRequest",
            "field label not supported: spec.podCIDR",
        )

    run(body, tmp_path)


def test_fault_hooks_and_request_counts(tmp_path: Path) -> None:
    """fail_next_write answers the next write of that node with the API server's 409 once;
    go_down refuses connections until come_up, keeping the state; requests are counted by
    verb; latency delays every answer."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="f")))
        api.faults.fail_next_write("f", 409)
        code, status = await raw(
            "PATCH",
            "/api/v1/nodes/f",
            '{"metadata":{"labels":{"a":"1"}}}',
            "application/merge-patch+json",
        )
        assert (code, status["reason"]) == (409, "Conflict")
        assert status["message"] == (
            'Operation cannot be fulfilled on nodes "f": the object has been modified; please '
            "apply your changes to the latest version and try again"
        )
        assert (await v1.read_node("f")).metadata.labels is None
        code, _ = await raw(
            "PATCH",
            "/api/v1/nodes/f",
            '{"metadata":{"labels":{"a":"1"}}}',
            "application/merge-patch+json",
        )
        assert code == 200
        await api.go_down()
        with pytest.raises(aiohttp.ClientConnectorError):
            await raw("GET", "/api/v1/nodes/f")
        await api.come_up()
        assert (await v1.read_node("f")).metadata.labels == {"a": "1"}
        assert dict(api.requests) == {"create": 1, "patch": 2, "get": 2}
        api.faults.latency = 2.0
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.5):
                await raw("GET", "/api/v1/nodes/f")
        api.faults.latency = 0.0

    run(body, tmp_path)


def test_authentication(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        code, status = await raw("GET", "/api/v1/nodes", anonymous=True)
        assert (code, status) == (
            401,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            },
        )
        token = api.issue_token("system:serviceaccount:trustplane:trustplane-hub")
        async with raw.session.get(
            api.url + "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}, ssl=raw.anon
        ) as resp:
            assert resp.status == 200
        async with raw.session.get(
            api.url + "/api/v1/nodes", headers={"Authorization": "Bearer x" + token}, ssl=raw.anon
        ) as resp:
            assert resp.status == 401
        assert api.requests["list"] == 1

    run(body, tmp_path)


@pytest.mark.parametrize(
    ("method", "path", "payload", "ctype", "code"),
    [
        ("POST", "/api/v1/nodes", b"\xff\xfe{", "application/json", 400),
        ("POST", "/api/v1/nodes", b"[1,2]", "application/json", 400),
        ("POST", "/api/v1/nodes", b'{"kind":"Pod","apiVersion":"v1"}', "application/json", 400),
        ("POST", "/api/v1/nodes", b"{}", "application/vnd.kubernetes.protobuf", 415),
        ("POST", "/api/v1/nodes", b"{" * 100 + b"}", "application/json", 400),
        ("GET", "/api/v1/nodes?limit=99999999999999999999999", None, "", 400),
        ("GET", "/api/v1/nodes?resourceVersion=-1", None, "", 400),
        ("GET", "/api/v1/nodes?resourceVersion=999999", None, "", 504),
        ("GET", "/api/v1/nodes?labelSelector=a%00b", None, "", 400),
        ("GET", "/api/v1/nodes?continue=%%%", None, "", 400),
        ("PATCH", "/api/v1/nodes/g", b"x: [", "application/apply-patch+yaml", 422),
        ("PATCH", "/api/v1/nodes/g?fieldManager=m", b"x: [", "application/apply-patch+yaml", 400),
        ("PATCH", "/api/v1/nodes/g", b"[]", "application/merge-patch+json", 400),
        (
            "PATCH",
            "/api/v1/nodes/g",
            b'[{"op":"test","path":"/metadata/name","value":"h"}]',
            "application/json-patch+json",
            422,
        ),
        (
            "PATCH",
            "/api/v1/nodes/g",
            b'[{"op":"remove","path":"/spec/nosuch"}]',
            "application/json-patch+json",
            422,
        ),
        ("PATCH", "/api/v1/nodes/g", b"{}", "text/plain", 415),
        (
            "PATCH",
            "/api/v1/nodes/g?fieldManager=" + "m" * 200,
            b"{}",
            "application/merge-patch+json",
            422,
        ),
        (
            "PUT",
            "/api/v1/nodes/g",
            b'{"apiVersion":"v1","kind":"Node","metadata":{"name":"other"}}',
            "application/json",
            400,
        ),
        ("DELETE", "/api/v1/nodes/nosuch", None, "", 404),
        ("GET", "/api/v2/nodes", None, "", 404),
        ("POST", "/api/v1/namespaces/nosuch/events", b"{}", "application/json", 404),
    ],
)
def test_garbage_gets_a_status_never_a_500(
    tmp_path: Path, method: str, path: str, payload: bytes | None, ctype: str, code: int
) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="g")))
        got, status = await raw(method, path, payload, ctype or "application/json")
        assert got == code
        assert status["kind"] == "Status"
        assert status["code"] == code

    run(body, tmp_path)


def test_body_over_3_mib_is_413(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        big = json.dumps(node("big", {"a": "1"}) | {"pad": "x" * (3 * 1024 * 1024)})
        code, status = await raw("POST", "/api/v1/nodes", big)
        assert (code, status["reason"]) == (413, "RequestEntityTooLarge")

    run(body, tmp_path)


def test_patch_flavours(tmp_path: Path) -> None:
    """What kubectl and the hub send: strategic merge replaces spec.taints whole and deletes
    with null; JSON merge patch; JSON patch with an escaped label key; a PUT without a
    resourceVersion is an unconditional update (nodes allow it)."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="p")))
        smp = "application/strategic-merge-patch+json"
        taints = [
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "value": "1", "effect": "NoExecute"},
        ]
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/p",
            json.dumps({"spec": {"taints": taints, "unschedulable": True}}),
            smp,
        )
        assert (code, got["spec"]) == (200, {"taints": taints, "unschedulable": True})
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/p",
            json.dumps({"spec": {"taints": None, "unschedulable": None}}),
            smp,
        )
        assert (code, got["spec"]) == (200, {})
        ops = [
            {"op": "add", "path": "/metadata/labels", "value": {}},
            {"op": "add", "path": "/metadata/labels/tp.example~1x", "value": "1"},
        ]
        code, got = await raw(
            "PATCH", "/api/v1/nodes/p", json.dumps(ops), "application/json-patch+json"
        )
        assert (code, got["metadata"]["labels"]) == (200, {"tp.example/x": "1"})
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/p",
            '{"metadata":{"labels":{"tp.example/x":null,"y":"2"}}}',
            "application/merge-patch+json",
        )
        assert (code, got["metadata"]["labels"]) == (200, {"y": "2"})
        current = (await raw("GET", "/api/v1/nodes/p"))[1]
        current["metadata"].pop("resourceVersion")
        current["metadata"]["labels"] = {"z": "3"}
        code, got = await raw("PUT", "/api/v1/nodes/p", json.dumps(current))
        assert (code, got["metadata"]["labels"]) == (200, {"z": "3"})
        current["metadata"]["resourceVersion"] = "1"
        code, got = await raw("PUT", "/api/v1/nodes/p", json.dumps(current))
        assert (code, got["reason"]) == (409, "Conflict")

    run(body, tmp_path)


def test_update_takes_ownership_from_apply(tmp_path: Path) -> None:
    """An update (merge patch) of a field an apply manager owns moves the field to the
    updater; the applier's later apply without force then conflicts with the updater (shown
    `using v1`); a field the updater changed stays when the applier leaves it out, one it
    only re-wrote unchanged does not."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        apply = "application/apply-patch+yaml"
        await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=hub",
            json.dumps(node("o", {"t": "1", "u": "1"})),
            apply,
        )
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=editor",
            '{"metadata":{"labels":{"t":"2"}}}',
            "application/merge-patch+json",
        )
        assert code == 200
        owners = {
            (m["manager"], m["operation"]): m["fieldsV1"] for m in got["metadata"]["managedFields"]
        }
        assert owners == {
            ("hub", "Apply"): {"f:metadata": {"f:labels": {"f:u": {}}}},
            ("editor", "Update"): {"f:metadata": {"f:labels": {"f:t": {}}}},
        }
        code, status = await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=hub",
            json.dumps(node("o", {"t": "1", "u": "1"})),
            apply,
        )
        assert (code, status["message"]) == (
            409,
            'Apply failed with 1 conflict: conflict with "editor" using v1: .metadata.labels.t',
        )
        # an update that writes u's current value changes nothing and takes no ownership
        # (the updater gains only the fields it modified or added): hub still owns u alone
        await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=editor",
            '{"metadata":{"labels":{"u":"1"}}}',
            "application/merge-patch+json",
        )
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=hub",
            json.dumps(node("o", {"t": "2", "v": "1"})),
            apply,
        )
        assert got["metadata"]["labels"] == {"t": "2", "v": "1"}
        # a field an updater changed is the updater's: it stays when hub leaves it out
        await raw(
            "PATCH",
            "/api/v1/nodes/o?fieldManager=editor",
            '{"metadata":{"labels":{"v":"2","w":"1"}}}',
            "application/merge-patch+json",
        )
        code, got = await raw(
            "PATCH", "/api/v1/nodes/o?fieldManager=hub", json.dumps(node("o", {"t": "2"})), apply
        )
        assert code == 200
        assert got["metadata"]["labels"] == {"t": "2", "v": "2", "w": "1"}

    run(body, tmp_path)


def test_status_subresource(tmp_path: Path) -> None:
    """Writes to the node keep its status; writes to nodes/NAME/status change only status."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        made = node("s") | {"status": {"nodeInfo": {"systemUUID": "u-1"}}}
        code, got = await raw("POST", "/api/v1/nodes", json.dumps(made))
        assert (code, got["status"]["nodeInfo"]["systemUUID"]) == (201, "u-1")
        patch = '{"metadata":{"labels":{"a":"1"}},"status":{"nodeInfo":{"systemUUID":"u-2"}}}'
        code, got = await raw("PATCH", "/api/v1/nodes/s", patch, "application/merge-patch+json")
        assert (code, got["metadata"]["labels"], got["status"]["nodeInfo"]["systemUUID"]) == (
            200,
            {"a": "1"},
            "u-1",
        )
        patch = '{"metadata":{"labels":{"b":"1"}},"status":{"nodeInfo":{"systemUUID":"u-3"}}}'
        code, got = await raw(
            "PATCH", "/api/v1/nodes/s/status", patch, "application/merge-patch+json"
        )
        assert (code, got["metadata"]["labels"], got["status"]["nodeInfo"]["systemUUID"]) == (
            200,
            {"a": "1"},
            "u-3",
        )

    run(body, tmp_path)


def test_events_k8s_io_v1_is_the_same_event(tmp_path: Path) -> None:
    """An events.k8s.io/v1 Event is listed by core/v1 with its fields converted (regarding ->
    involvedObject, note -> message, reportingController -> reportingComponent)."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        ev = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "trustplane.io/hub",
            "reportingInstance": "hub-1",
            "action": "Reconcile",
            "reason": "TrustLost",
            "regarding": {"kind": "Node", "name": "x", "uid": "x"},
            "note": "lost",
            "type": "Warning",
        }
        code, got = await raw(
            "POST", "/apis/events.k8s.io/v1/namespaces/default/events", json.dumps(ev)
        )
        assert code == 201
        assert (got["regarding"], got["note"]) == (
            {"kind": "Node", "name": "x", "uid": "x"},
            "lost",
        )
        listed = await v1.list_event_for_all_namespaces(field_selector="involvedObject.name=x")
        e = listed.items[0]
        assert (e.involved_object.name, e.message, e.reporting_component, e.reason) == (
            "x",
            "lost",
            "trustplane.io/hub",
            "TrustLost",
        )

    run(body, tmp_path)


def test_label_and_taint_validation_causes(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="v")))
        long_prefix = "a" * 254 + "/x"
        patch = {
            "metadata": {"labels": {long_prefix: "v", "/x": "v", "Bad.Prefix/x": "v"}},
            "spec": {
                "taints": [
                    {"key": "k", "effect": ""},
                    {"key": "k", "effect": "NoSchedule"},
                    {"key": "k", "effect": "NoSchedule"},
                ]
            },
        }
        code, status = await raw(
            "PATCH", "/api/v1/nodes/v", json.dumps(patch), "application/strategic-merge-patch+json"
        )
        assert code == 422
        causes = [(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]]
        subdomain = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
        expected = [
            (
                "FieldValueInvalid",
                "metadata.labels",
                'Invalid value: "/x": prefix part must be non-empty',
            ),
            (
                "FieldValueInvalid",
                "metadata.labels",
                f'Invalid value: "{long_prefix}": prefix part must be no more than 253 characters',
            ),
            (
                "FieldValueInvalid",
                "metadata.labels",
                f'Invalid value: "Bad.Prefix/x": prefix part {subdomain}',
            ),
            ("FieldValueRequired", "spec.taints[0].effect", "Required value"),
            (
                "FieldValueDuplicate",
                "spec.taints[2]",
                (
                    'Duplicate value: core.Taint{Key:"k", Value:"", Effect:"NoSchedule", '
                    "TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair"
                ),
            ),
        ]
        # a real API server walks the labels map in no fixed order: compare sorted
        assert sorted(causes) == sorted(expected)

    run(body, tmp_path)


def test_event_validation_is_the_legacy_one(tmp_path: Path) -> None:
    """core/v1 Events without eventTime are checked only for the namespace rule (any reason,
    type or length passes, as with the API server); with eventTime the reporting fields,
    action and reason are required."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        ev = {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Node", "name": "x"},
            "reason": "R" * 300,
            "type": "Odd",
        }
        code, _ = await raw("POST", "/api/v1/namespaces/default/events", json.dumps(ev))
        assert code == 201
        code, status = await raw("POST", "/api/v1/namespaces/kube-system/events", json.dumps(ev))
        assert (code, status["details"]["causes"]) == (
            422,
            [
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "": does not match event.namespace',
                    "field": "involvedObject.namespace",
                }
            ],
        )
        ev = {
            "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Node", "name": "x"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingComponent": "trustplane.io/hub",
            "reportingInstance": "hub-1",
            "reason": "TrustLost",
        }
        code, status = await raw("POST", "/api/v1/namespaces/default/events", json.dumps(ev))
        assert (code, status["message"]) == (422, 'Event "e2" is invalid: action: Required value')

    run(body, tmp_path)


@pytest.mark.parametrize("abrupt", [False, True], ids=["graceful", "abrupt"])
def test_go_down_ends_open_watches(tmp_path: Path, abrupt: bool) -> None:
    """An open watch ends when the server goes down: its body ends cleanly in a graceful stop,
    the connection is cut mid-stream in an abrupt one (the client sees a payload error); a new
    watch resumes from the last resourceVersion once it is back."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="d")))
        start = (await v1.list_node()).metadata.resource_version
        seen = []

        async def follow() -> None:
            async for ev in watch.Watch().stream(
                v1.list_node, resource_version=start, timeout_seconds=30
            ):
                seen.append((ev["type"], ev["object"].metadata.name))

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        await v1.patch_node("d", {"metadata": {"labels": {"a": "1"}}})
        await asyncio.sleep(0.3)
        await api.go_down(abrupt=abrupt)
        async with asyncio.timeout(10):
            if abrupt:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await task
            else:
                await task
        assert seen == [("MODIFIED", "d")]
        await api.come_up()
        resumed = []
        async for ev in watch.Watch().stream(
            v1.list_node, resource_version=start, timeout_seconds=1
        ):
            resumed.append(ev["type"])
        assert resumed == ["MODIFIED"]

    run(body, tmp_path)


def test_delete_preconditions(tmp_path: Path) -> None:
    """DeleteOptions.preconditions: a stale uid or resourceVersion is a 409 Conflict with the
    API server's "Precondition failed" wording; matching ones delete."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        made = await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="x")))
        stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
        with pytest.raises(client.ApiException) as caught:
            await v1.delete_node("x", body=stale)
        status = json.loads(caught.value.body)
        assert (status["code"], status["reason"], status["message"]) == (
            409,
            "Conflict",
            (
                'Operation cannot be fulfilled on nodes "x": Precondition failed: '
                "ResourceVersion in precondition: 1, ResourceVersion in object meta: "
                f"{made.metadata.resource_version}"
            ),
        )
        fresh = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(
                uid=made.metadata.uid, resource_version=made.metadata.resource_version
            )
        )
        await v1.delete_node("x", body=fresh)
        assert api.store.nodes == {}

    run(body, tmp_path)


def test_request_options_are_validated_like_patch_options(tmp_path: Path) -> None:
    """Apply without fieldManager, force on a merge patch, a fieldManager over 128 bytes: 422
    on PatchOptions.meta.k8s.io, as ValidatePatchOptions and ValidateFieldManager answer."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        await v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="o")))
        apply, merge = "application/apply-patch+yaml", "application/merge-patch+json"
        cases = [
            ("/api/v1/nodes/o", apply, "fieldManager: Required value: is required for apply patch"),
            (
                "/api/v1/nodes/o?force=true",
                merge,
                "force: Forbidden: may not be specified for non-apply patch",
            ),
            (
                "/api/v1/nodes/o?fieldManager=" + "m" * 129,
                merge,
                "fieldManager: Too long: may not be more than 128 bytes",
            ),
        ]
        for path, ctype, detail in cases:
            code, status = await raw("PATCH", path, json.dumps(node("o")), ctype)
            assert (code, status["reason"], status["message"]) == (
                422,
                "Invalid",
                f'PatchOptions.meta.k8s.io "" is invalid: {detail}',
            )
            assert (status["details"]["group"], status["details"]["kind"]) == (
                "meta.k8s.io",
                "PatchOptions",
            )

    run(body, tmp_path)


def test_kubectl_server_side_apply_upgrades_client_side_apply(tmp_path: Path) -> None:
    """For the manager `kubectl` only, the API server forgives apply conflicts on fields in the
    last-applied-configuration annotation and rewrites that annotation to the applied
    configuration (lastAppliedManager, lastAppliedUpdater)."""

    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        last = json.dumps(node("u", {"a": "1"}))
        made = node("u", {"a": "1"})
        made["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": last}
        code, _ = await raw(
            "POST", "/api/v1/nodes?fieldManager=kubectl-client-side-apply", json.dumps(made)
        )
        assert code == 201
        apply = "application/apply-patch+yaml"
        code, status = await raw(
            "PATCH", "/api/v1/nodes/u?fieldManager=other", json.dumps(node("u", {"a": "2"})), apply
        )
        assert (code, status["message"]) == (
            409,
            (
                'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: '
                ".metadata.labels.a"
            ),
        )
        code, got = await raw(
            "PATCH",
            "/api/v1/nodes/u?fieldManager=kubectl",
            json.dumps(node("u", {"a": "2"})),
            apply,
        )
        assert code == 200
        assert got["metadata"]["labels"] == {"a": "2"}
        rewritten = json.loads(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        )
        assert rewritten == node("u", {"a": "2"})

    run(body, tmp_path)


def test_event_list_pages(tmp_path: Path) -> None:
    async def body(api: FakeApiServer, v1: client.CoreV1Api, raw: Raw) -> None:
        for i in range(3):
            ev = {"metadata": {"name": f"e{i}"}, "involvedObject": {"kind": "Node", "name": "n"}}
            await raw("POST", "/api/v1/namespaces/default/events", json.dumps(ev))
        first = await v1.list_event_for_all_namespaces(limit=2)
        assert [e.metadata.name for e in first.items] == ["e0", "e1"]
        assert first.metadata.remaining_item_count == 1
        rest = await v1.list_event_for_all_namespaces(limit=2, _continue=first.metadata._continue)
        assert [e.metadata.name for e in rest.items] == ["e2"]
        assert rest.metadata._continue is None

    run(body, tmp_path)
