"""The status pages on the real hub (loopback TLS): login, every page behind it, data from the
store, CSRF on acknowledgement, roles, escaping, the live event stream."""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterator
from http.client import HTTPSConnection
from pathlib import Path

import pytest
import requests

from hub.statedir import TOKEN_PREFIX
from hub.web.live import LIVE
from hub.web.session import COOKIE
from tests.hub.harness import HubProcess
from tests.hub.weblib import (
    base_url,
    form_csrf,
    http,
    login,
    report_verdict,
    seed_host,
    start_hub,
)

BAD = "b" * 64
GOOD = "a" * 64
PENDING = "c" * 64
PCR_RULE = {
    "flavor_id": "dell-r640.platform",
    "rule_id": "pcr-0",
    "kind": "pcr_matches",
    "pcr": 0,
    "passed": False,
    "reason": "flavor.platform.pcr_mismatch",
    "expected": "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    "actual": "1111111111111111111111111111111111111111111111111111111111111111",
    "differences": [
        {
            "kind": "changed",
            "pcr": 0,
            "type_name": "EV_POST_CODE",
            "index": 3,
            "position": 2,
            "expected_digest": "aa" * 32,
            "actual_digest": "bb" * 32,
            "description": "POST code",
        }
    ],
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = start_hub(tmp_path_factory.mktemp("web"))
    try:
        seed_host(process, GOOD, hostname="good.test", node_name="node-good", tags={"rack": "7"})
        report_verdict(process, GOOD, "trusted")
        seed_host(
            process,
            BAD,
            hostname="bad.test",
            node_name="node-bad",
            tags={"region": "EU"},
            flavors=["dell-r640.platform"],
        )
        report_verdict(process, BAD, "trusted")
        report_verdict(
            process, BAD, "untrusted", ("flavor.platform.pcr_mismatch",), rules=[PCR_RULE]
        )
        seed_host(process, PENDING, hostname="<script>alert(1)</script>", node_name=None)
        process.clock.advance(300)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(hub: HubProcess) -> str:
    return hub.token("admin", "alice")


@pytest.fixture(scope="module")
def viewer(hub: HubProcess) -> str:
    return hub.token("viewer", "victor")


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def routes(hub: HubProcess) -> list[tuple[str, str]]:
    out = []
    for route in hub.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:
            out.append((route.method, path))
    return sorted(set(out))


PUBLIC = {("GET", "/health"), ("GET", "/login"), ("POST", "/login")}
AGENT = {
    ("POST", "/v1/challenge"),
    ("POST", "/v1/report"),
    ("POST", "/v1/tags"),
    ("POST", "/v1/keys/challenge"),
    ("POST", "/v1/keys/release"),
}
# enrollment routes, and the hub's public policy-signing key agents read before enrolling
ENROLL = {("POST", "/v1/enroll"), ("POST", "/v1/enroll/activate"), ("GET", "/v1/enroll/policy-key")}


def test_every_route_without_credentials_is_refused(hub: HubProcess) -> None:
    s = http(hub)
    checked = set()
    for method, path in routes(hub):
        if (method, path) in PUBLIC | ENROLL:
            continue
        resp = s.request(method, base_url(hub) + concrete(path), allow_redirects=False, json={})
        checked.add((method, path))
        if resp.status_code == 303:
            assert resp.headers["Location"].startswith("/login?next="), (method, path)
            assert "bad.test" not in resp.text
            continue
        assert resp.status_code == 401, (method, path, resp.status_code)
        expected = "auth.client_certificate_required" if (method, path) in AGENT else None
        code = resp.json()["error"]["code"]
        assert code == expected or code == "auth.required", (method, path, code)
    assert {
        ("GET", "/"),
        ("GET", "/hosts/{host_id}"),
        ("GET", "/alerts"),
        ("POST", "/alerts/{alert_id}/ack"),
        ("GET", "/flavors"),
        ("POST", "/logout"),
        ("GET", "/v1/events"),
        ("GET", "/v1/flavors"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/v1/hosts"),
        ("POST", "/v1/report"),
    } <= checked


def test_pages_redirect_to_login_with_next(hub: HubProcess) -> None:
    resp = http(hub).get(base_url(hub) + "/hosts/" + BAD, allow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/login?next=/hosts/{BAD}"


def test_login_cookie_is_strict_and_holds_no_token(hub: HubProcess, viewer: str) -> None:
    s = http(hub)
    form = s.get(base_url(hub) + "/login")
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": viewer, "csrf": form_csrf(form.text), "next": "/alerts"},
        allow_redirects=False,
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/alerts"
    cookie = next(c for c in resp.raw.headers.getlist("Set-Cookie") if c.startswith(COOKIE))
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attrs
    assert "SameSite=Strict" in cookie
    assert viewer not in cookie
    assert viewer.removeprefix(TOKEN_PREFIX) not in cookie  # not even the secret part


@pytest.mark.parametrize(
    ("token_kind", "status", "message"),
    [
        ("unknown", 401, "Unknown or revoked token."),
        ("pipeline", 403, "A pipeline token cannot open the status page."),
    ],
)
def test_login_refusals(hub: HubProcess, token_kind: str, status: int, message: str) -> None:
    token = hub.token("pipeline", "ci") if token_kind == "pipeline" else "tp_nonsense"
    s = http(hub)
    form = s.get(base_url(hub) + "/login")
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": token, "csrf": form_csrf(form.text)},
        allow_redirects=False,
    )
    assert resp.status_code == status
    assert message in resp.text
    assert COOKIE not in s.cookies


def test_logging_in_again_replaces_the_session(hub: HubProcess, viewer: str, admin: str) -> None:
    s = login(hub, viewer)
    first = s.cookies[COOKIE]
    form = s.get(base_url(hub) + "/login")
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": admin, "csrf": form_csrf(form.text), "next": "/alerts"},
        allow_redirects=False,
    )
    assert resp.status_code == 303
    assert s.cookies[COOKIE] != first
    assert "alice <span" in s.get(base_url(hub) + "/alerts").text


def test_login_without_form_csrf_is_refused(hub: HubProcess, admin: str) -> None:
    s = http(hub)
    s.get(base_url(hub) + "/login")
    resp = s.post(base_url(hub) + "/login", data={"token": admin, "csrf": "x"})
    assert resp.status_code == 403
    assert COOKIE not in s.cookies


def test_login_next_never_leaves_the_hub(hub: HubProcess, admin: str) -> None:
    s = http(hub)
    form = s.get(base_url(hub) + "/login")
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": admin, "csrf": form_csrf(form.text), "next": "//evil.example/x"},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/"


def test_hosts_page_shows_verdicts_reasons_ages_tags(hub: HubProcess, viewer: str) -> None:
    page = login(hub, viewer).get(base_url(hub) + "/").text
    row = re.search(rf'<tr data-host="{BAD}">(.*?)</tr>', page, re.S)
    assert row, "no row for the untrusted host"
    cells = row.group(1)
    assert "bad.test" in cells
    assert "node-bad" in cells
    assert '<span class="pill verdict v-untrusted">untrusted</span>' in cells
    assert "<code>flavor.platform.pcr_mismatch</code>" in cells
    assert "A PCR value differs from the platform flavor." in cells
    assert "5 min ago" in cells
    assert '<span class="tag">region=EU</span>' in cells
    good = re.search(rf'<tr data-host="{GOOD}">(.*?)</tr>', page, re.S)
    assert good
    assert "v-trusted" in good.group(1)
    assert "rack=7" in good.group(1)
    assert re.search(r'id="count-untrusted">1<', page)
    assert re.search(r'id="count-pending">1<', page)


def test_pages_escape_what_hosts_say(hub: HubProcess, viewer: str) -> None:
    page = login(hub, viewer).get(base_url(hub) + "/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


def test_pages_carry_a_nonce_csp(hub: HubProcess, viewer: str) -> None:
    resp = login(hub, viewer).get(base_url(hub) + "/")
    csp = resp.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce
    assert f'<script nonce="{nonce.group(1)}">' in resp.text
    assert "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_host_page_shows_rules_and_event_differences(hub: HubProcess, viewer: str) -> None:
    page = login(hub, viewer).get(base_url(hub) + "/hosts/" + BAD).text
    rules = re.search(r'<table id="rules">(.*?)</table>', page, re.S)
    assert rules
    text = rules.group(1)
    assert '<span class="fail">fail</span>' in text
    assert PCR_RULE["expected"] in text
    assert PCR_RULE["actual"] in text
    assert "dell-r640.platform" in text
    assert "PCR 0 EV_POST_CODE changed (event 3): " + "aa" * 32 + " → " + "bb" * 32 in text
    assert "trusted → " in page  # the verdict history


def test_host_page_survives_partial_rule_results(hub: HubProcess, viewer: str) -> None:
    host = "5" * 64
    seed_host(hub, host, hostname="odd.test")
    odd = [{"passed": False}, {"rule": "r", "passed": True, "differences": [{"pcr": 4}, "x"]}]
    report_verdict(hub, host, "untrusted", ("flavor.os.eventlog_mismatch",), rules=odd)
    resp = login(hub, viewer).get(base_url(hub) + "/hosts/" + host)
    assert resp.status_code == 200
    assert "The event log differs from the os flavor." in resp.text
    assert "PCR 4 event differs" in resp.text


def test_unknown_host_page_is_an_html_404(hub: HubProcess, viewer: str) -> None:
    resp = login(hub, viewer).get(base_url(hub) + "/hosts/" + "f" * 64)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "host.unknown" in resp.text


def open_alert_id(hub: HubProcess, host_id: str) -> int:
    alerts = hub.call(hub.state.store.list_alerts(open_only=True))
    return next(a.id for a in alerts if a.host_id == host_id)


def test_alerts_page_lists_open_alert_with_ack_form_for_admin(hub: HubProcess, admin: str) -> None:
    alert_id = open_alert_id(hub, BAD)
    page = login(hub, admin).get(base_url(hub) + "/alerts").text
    row = re.search(rf'<tr data-alert="{alert_id}">(.*?)</tr>', page, re.S)
    assert row
    assert "bad.test" in row.group(1)
    assert "flavor.platform.pcr_mismatch" in row.group(1)
    assert f'action="/alerts/{alert_id}/ack"' in row.group(1)


def test_viewer_sees_no_ack_form_and_cannot_ack(hub: HubProcess, viewer: str) -> None:
    alert_id = open_alert_id(hub, BAD)
    s = login(hub, viewer)
    page = s.get(base_url(hub) + "/alerts").text
    assert "/ack" not in page
    resp = s.post(
        base_url(hub) + f"/alerts/{alert_id}/ack",
        data={"csrf": form_csrf(page)},
        allow_redirects=False,
    )
    assert resp.status_code == 403
    assert "auth.forbidden" in resp.text
    assert open_alert_id(hub, BAD) == alert_id


@pytest.mark.parametrize("csrf", [None, "wrong"])
def test_ack_without_the_csrf_token_is_refused(
    hub: HubProcess, admin: str, csrf: str | None
) -> None:
    alert_id = open_alert_id(hub, BAD)
    s = login(hub, admin)
    data = {} if csrf is None else {"csrf": csrf}
    resp = s.post(base_url(hub) + f"/alerts/{alert_id}/ack", data=data, allow_redirects=False)
    assert resp.status_code == 403
    assert "csrf.invalid" in resp.text
    assert open_alert_id(hub, BAD) == alert_id
    api = s.post(base_url(hub) + f"/v1/alerts/{alert_id}/ack", json={})
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "csrf.invalid"


def test_cookie_reads_json_twins(hub: HubProcess, viewer: str) -> None:
    s = login(hub, viewer)
    hosts = s.get(base_url(hub) + "/v1/hosts").json()["hosts"]
    assert {h["id"]: h["verdict"] for h in hosts if h["id"] in (GOOD, BAD, PENDING)} == {
        GOOD: "trusted",
        BAD: "untrusted",
        PENDING: "pending",
    }
    flavors = s.get(base_url(hub) + "/v1/flavors").json()
    assert flavors == {
        "flavors": [
            {
                "id": "dell-r640.platform",
                "stored": False,
                "name": "dell-r640.platform",
                "part": "",
                "description": "",
                "rules": 0,
                "hosts": [BAD],
            }
        ]
    }
    page = s.get(base_url(hub) + "/flavors").text
    assert "dell-r640.platform" in page
    assert "not stored in the hub" in page


def test_session_ends_with_logout_revocation_and_expiry(hub: HubProcess) -> None:
    token = hub.token("viewer", "short")
    s = login(hub, token)
    page = s.get(base_url(hub) + "/")
    assert page.status_code == 200
    out = s.post(base_url(hub) + "/logout", data={"csrf": form_csrf(page.text)})
    assert out.url.endswith("/login")
    assert s.get(base_url(hub) + "/", allow_redirects=False).status_code == 303

    s = login(hub, token)
    tokens = hub.call(hub.state.store.list_tokens())
    hub.call(hub.state.store.revoke_token(next(t.id for t in tokens if t.name == "short")))
    assert s.get(base_url(hub) + "/", allow_redirects=False).status_code == 303

    other = hub.token("viewer", "expiring")
    s = login(hub, other)
    assert s.get(base_url(hub) + "/", allow_redirects=False).status_code == 200
    hub.clock.advance(hub.config.web.session_ttl + 1)
    try:
        assert s.get(base_url(hub) + "/", allow_redirects=False).status_code == 303
    finally:
        hub.clock.advance(-(hub.config.web.session_ttl + 1))


def test_admin_acknowledges_from_the_page(hub: HubProcess, admin: str) -> None:
    seed_host(hub, "d" * 64, hostname="ack.test")
    report_verdict(hub, "d" * 64, "trusted")
    seeded = report_verdict(hub, "d" * 64, "untrusted", ("quote.pcr_digest_mismatch",))
    assert seeded.alert_id is not None
    s = login(hub, admin)
    page = s.get(base_url(hub) + "/alerts").text
    resp = s.post(
        base_url(hub) + f"/alerts/{seeded.alert_id}/ack",
        data={"csrf": form_csrf(page)},
        allow_redirects=False,
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/alerts"
    alert = next(a for a in hub.call(hub.state.store.list_alerts()) if a.id == seeded.alert_id)
    assert alert.acked_by == "alice"
    acked = s.get(base_url(hub) + "/alerts").text
    section = acked.split('id="acked"')[1]
    assert f'<tr data-alert="{seeded.alert_id}">' in section
    assert "by alice" in section


def read_events(hub: HubProcess, token: str, want: int, out: list[tuple[str, dict]]) -> None:
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    conn = HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=20)
    conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    kind = ""
    while len(out) < want:
        line = resp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:])))
    conn.close()


def test_event_stream_pushes_verdict_and_alert(hub: HubProcess, viewer: str) -> None:
    host = "e" * 64
    seed_host(hub, host, hostname="live.test")
    report_verdict(hub, host, "trusted")
    got: list[tuple[str, dict]] = []
    reader = threading.Thread(target=read_events, args=(hub, viewer, 2, got))
    reader.start()
    for _ in range(200):  # wait until the stream is subscribed (bounded)
        if hub.call(_subscribers(hub)) > 0:
            break
        threading.Event().wait(0.02)
    seeded = report_verdict(hub, host, "untrusted", ("eventlog.replay_mismatch",))
    reader.join(20)
    assert not reader.is_alive()
    kinds = dict(got)
    assert kinds["verdict"] == {
        "host_id": host,
        "previous": "trusted",
        "verdict": "untrusted",
        "reasons": [
            {
                "id": "eventlog.replay_mismatch",
                "text": "Replaying the event log does not give the quoted PCR values.",
            }
        ],
        "at": seeded.at,
        "alert_id": seeded.alert_id,
    }
    assert kinds["alert"]["status"] == "firing"
    assert kinds["alert"]["id"] == seeded.alert_id
    assert kinds["alert"]["hostname"] == "live.test"


async def _subscribers(hub: HubProcess) -> int:
    return hub.app[LIVE].subscribers


def test_static_sanity_no_external_resources(hub: HubProcess, viewer: str) -> None:
    s: requests.Session = login(hub, viewer)
    for path in ("/", "/alerts", "/flavors", f"/hosts/{BAD}"):
        page = s.get(base_url(hub) + path).text
        assert "http://" not in page, path
        assert "https://" not in page, path


def test_hub_shutdown_ends_open_streams(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    token = hub.token("viewer")
    ctx = ssl.create_default_context(cafile=str(hub.ca_file))
    conn = HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=20)
    try:
        conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.readline() == b"retry: 3000\n"
        stopper = threading.Thread(target=hub.stop)
        stopper.start()
        rest = resp.read()  # returns at the end of the stream; a hang fails by socket timeout
        stopper.join(20)
        assert not stopper.is_alive()
        assert rest == b": connected\n\n"
    finally:
        conn.close()


def test_every_answer_over_tls_carries_hsts(hub: HubProcess) -> None:
    s = http(hub)
    for path in ("/health", "/login", "/no-such-page", "/v1/hosts"):
        resp = s.get(base_url(hub) + path, allow_redirects=False)
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000", path


def test_a_passing_rule_without_values_shows_no_placeholder_noise(
    hub: HubProcess, viewer: str
) -> None:
    # was: "expected — actual —" beside every passing rule that has no values to show
    host = "6" * 64
    seed_host(hub, host, hostname="quiet.test")
    rules = [
        {"rule": "eventlog_integrity", "passed": True},
        {
            "rule": "pcr_matches:0",
            "passed": True,
            "expected": "sha256:0=aa",
            "actual": "sha256:0=aa",
        },
    ]
    report_verdict(hub, host, "trusted", (), rules=rules)
    page = login(hub, viewer).get(base_url(hub) + "/hosts/" + host).text
    rows = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]
    assert "as expected" in rows[0]
    assert "—" not in rows[0]
    assert "sha256:0=aa" in rows[1]
