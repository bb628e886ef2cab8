"""The hub's HTTP boundary on real TLS: authentication, roles, error shapes, body limits,
staleness and alerts. No TPM is needed here."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from hub.attestation import sweep_stale
from hub.auth import public
from tests.hub.harness import FakeClock, HubProcess, make_state

HOST = "12" * 32


@public
async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail: /etc/trustplane/hub.toml line 3")


async def unmarked(request: web.Request) -> web.Response:
    return web.json_response({"leak": True})


@pytest.fixture(scope="module")
def bare_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("bare-hub")
    config = make_state(tmp, server={"listen": "127.0.0.1:0", "max_body_bytes": 128 * 1024})
    process = HubProcess(
        config,
        FakeClock(),
        extra_routes=lambda app: (
            app.router.add_get("/boom", broken),
            app.router.add_get("/unmarked", unmarked),
        ),
    )
    try:
        yield process
    finally:
        process.stop()


def test_health_needs_no_authentication(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().get("/health")
    assert (resp.status, resp.body) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/hosts"),
        ("GET", f"/v1/hosts/{HOST}"),
        ("POST", f"/v1/hosts/{HOST}/approve"),
        ("GET", "/v1/alerts"),
        ("POST", "/v1/alerts/1/ack"),
    ],
)
def test_people_endpoints_need_a_token(bare_hub: HubProcess, method: str, path: str) -> None:
    resp = bare_hub.client().request(method, path)
    assert resp.status == 401
    assert resp.code == "auth.required"
    assert isinstance(resp.body["error"]["message"], str)


def test_unknown_token_is_refused(bare_hub: HubProcess) -> None:
    resp = bare_hub.client(token="tph_not-a-real-token").get("/v1/hosts")
    assert (resp.status, resp.code) == (401, "auth.invalid_token")


def test_roles(bare_hub: HubProcess) -> None:
    viewer = bare_hub.client(token=bare_hub.token("viewer"))
    pipeline = bare_hub.client(token=bare_hub.token("pipeline"))
    admin = bare_hub.client(token=bare_hub.token("admin"))
    assert viewer.get("/v1/hosts").status == 200
    assert admin.get("/v1/hosts").status == 200
    resp = pipeline.get("/v1/hosts")
    assert (resp.status, resp.code) == (403, "auth.forbidden")
    resp = viewer.post(f"/v1/hosts/{HOST}/approve")
    assert (resp.status, resp.code) == (403, "auth.forbidden")
    resp = admin.post(f"/v1/hosts/{HOST}/approve")
    assert (resp.status, resp.code) == (404, "host.unknown")


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 200), ("?open=1", 200), ("?open=false", 200), ("?open=maybe", 400), ("?open=", 400)],
)
def test_alerts_open_flag_is_checked(bare_hub: HubProcess, query: str, status: int) -> None:
    resp = bare_hub.client(token=bare_hub.token("viewer")).get(f"/v1/alerts{query}")
    assert resp.status == status
    if status == 400:
        assert resp.code == "query.open_invalid"
    else:
        assert isinstance(resp.body["alerts"], list)


def test_revoked_token_stops_working(bare_hub: HubProcess) -> None:
    token = bare_hub.token("viewer", "short-lived")
    client = bare_hub.client(token=token)
    assert client.get("/v1/alerts").status == 200
    tokens = bare_hub.call(bare_hub.state.store.list_tokens())
    (mine,) = [t for t in tokens if t.name == "short-lived"]
    assert bare_hub.call(bare_hub.state.store.revoke_token(mine.id)) is True
    resp = client.get("/v1/alerts")
    assert (resp.status, resp.code) == (401, "auth.invalid_token")


def test_unexpected_error_is_logged_not_shown(
    bare_hub: HubProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="trustplane.hub"):
        resp = bare_hub.client().get("/boom")
    assert (resp.status, resp.code) == (500, "internal")
    assert "secret detail" not in json.dumps(resp.body)
    assert "Traceback" not in json.dumps(resp.body)
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)


def test_route_without_access_rule_is_closed(bare_hub: HubProcess) -> None:
    resp = bare_hub.client(token=bare_hub.token("admin")).get("/unmarked")
    assert (resp.status, resp.code) == (403, "auth.forbidden")


def test_unknown_path_is_json_404(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().get("/v1/nothing-here")
    assert (resp.status, resp.code) == (404, "http.not_found")


def test_wrong_method_is_json_405(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().get("/v1/report")
    assert (resp.status, resp.code) == (405, "http.method_not_allowed")


def test_malformed_json_is_400(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().post("/v1/enroll", raw=b"{not json")
    assert (resp.status, resp.code) == (400, "http.malformed_json")


def test_wrong_message_shape_is_400_wire_malformed(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().post("/v1/enroll", {"type": "enroll", "version": 1})
    assert (resp.status, resp.code) == (400, "wire.malformed")
    assert "ek_public" in resp.body["error"]["message"]


def test_oversized_enrollment_body_is_413(bare_hub: HubProcess) -> None:
    resp = bare_hub.client().post("/v1/enroll", raw=b"[" + b"1," * 40000 + b"1]")
    assert (resp.status, resp.code) == (413, "http.body_too_large")


def test_body_above_server_limit_is_413(bare_hub: HubProcess) -> None:
    admin = bare_hub.client(token=bare_hub.token("admin"))
    resp = admin.post("/v1/alerts/1/ack", raw=b"x" * (200 * 1024))
    assert resp.status == 413
    assert resp.code == "http.body_too_large"


def chunked_put(hub: HubProcess, token: str, path: str, body: bytes) -> tuple[int, dict]:
    """PUT ``body`` with Transfer-Encoding: chunked (no Content-Length) in 16 KiB chunks."""
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=30)
    chunks = (body[i : i + 16384] for i in range(0, len(body), 16384))
    try:
        conn.request(
            "PUT",
            path,
            body=chunks,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_chunked_body_above_server_limit_is_413(bare_hub: HubProcess) -> None:
    # the flavor route allows 4 MiB, this hub's server.max_body_bytes is 128 KiB: the smaller
    # limit applies while the chunked body is read
    token = bare_hub.token("admin")
    body = b'{"pad": "' + b"x" * (160 * 1024) + b'"}'
    status, answer = chunked_put(bare_hub, token, "/v1/flavors/big", body)
    assert (status, answer["error"]["code"]) == (413, "http.body_too_large")
    assert answer["error"]["message"] == f"request body exceeds {128 * 1024} bytes"
    # just under the limit the body is read (and refused for what it is, not its size)
    status, answer = chunked_put(bare_hub, token, "/v1/flavors/big", b"[" * (100 * 1024))
    assert (status, answer["error"]["code"]) == (400, "http.malformed_json")


def test_agent_endpoints_need_a_client_certificate(bare_hub: HubProcess) -> None:
    for path in ("/v1/challenge", "/v1/report"):
        resp = bare_hub.client(token=bare_hub.token("admin")).post(path, {})
        assert (resp.status, resp.code) == (401, "auth.client_certificate_required")


def test_stale_sweep_marks_host_alerts_and_publishes(bare_hub: HubProcess) -> None:
    st = bare_hub.state
    now = bare_hub.clock()

    async def setup() -> None:
        await st.store.register_host(
            host_id=HOST, state="approved", hostname="h", node_name="n", dmi_uuid=None, now=now
        )
        await st.store.record_report(
            host_id=HOST,
            received=now,
            verdict="trusted",
            reasons=(),
            sequence=1,
            body_sha256="00" * 32,
            valid_until=now + 600,
            rule_results=[],
            history=5,
        )

    bare_hub.call(setup())
    queue = st.events.subscribe()
    try:
        bare_hub.clock.advance(599)
        assert bare_hub.call(sweep_stale(st)) == 0
        bare_hub.clock.advance(2)
        assert bare_hub.call(sweep_stale(st)) == 1
        # every committed change reaches the bus (the setup's pending -> trusted too, unless
        # the bus read it before the queue subscribed): up to the stale one
        seen = [bare_hub.call(asyncio.wait_for(queue.get(), 5))]
        while seen[-1].verdict != "stale":
            seen.append(bare_hub.call(asyncio.wait_for(queue.get(), 5)))
        assert [c.verdict for c in seen[:-1]] in ([], ["trusted"])
        change = seen[-1]
    finally:
        st.events.unsubscribe(queue)
    assert (change.host_id, change.previous, change.verdict) == (HOST, "trusted", "stale")
    assert change.reasons == ("report.expired",)
    viewer = bare_hub.client(token=bare_hub.token("viewer"))
    host = viewer.get(f"/v1/hosts/{HOST}").body
    assert (host["verdict"], host["reasons"]) == ("stale", ["report.expired"])
    alerts = viewer.get("/v1/alerts?open=1").body["alerts"]
    mine = [a for a in alerts if a["host_id"] == HOST]
    assert [(a["kind"], a["reasons"]) for a in mine] == [("stale", ["report.expired"])]
    assert change.alert_id == mine[0]["id"]
    admin = bare_hub.client(token=bare_hub.token("admin", "ops"))
    resp = admin.post(f"/v1/alerts/{mine[0]['id']}/ack")
    assert resp.status == 200
    assert resp.body["acked_by"] == "ops"
    assert [a for a in viewer.get("/v1/alerts?open=1").body["alerts"] if a["host_id"] == HOST] == []


def test_state_files_are_private(bare_hub: HubProcess) -> None:
    state_dir: Path = bare_hub.config.state.dir
    assert state_dir.stat().st_mode & 0o777 == 0o700
    for name in ("ca.key", "server.key", "jws.key", "tag-ca.key", "master.key", "ca.pem"):
        assert (state_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert len((state_dir / "master.key").read_bytes()) == 32
