"""Bad input never gives a 500 or a dropped connection (the adversarial review, issue 11):
invalid UTF-8 in forms, integers past SQLite's range, and login redirects that would leave the
hub or break the Location header. Each case failed before its fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.web.session import safe_next
from tests.hub.conftest import BACKENDS
from tests.hub.harness import HubProcess
from tests.hub.weblib import base_url, form_csrf, http, start_hub


@pytest.fixture(scope="module", params=BACKENDS)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A hub on SQLite, then on PostgreSQL (whose integers and text refuse other values)."""
    database = "sqlite"
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres").create_database()
    process = start_hub(tmp_path_factory.mktemp("bad-input"), database=database)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(hub: HubProcess) -> str:
    return hub.token("admin", "admin")


def test_login_with_invalid_utf8_is_a_400(hub: HubProcess) -> None:
    # was: 500 (UnicodeDecodeError in aiohttp's form decoder), before any login check
    resp = http(hub).post(
        base_url(hub) + "/login",
        data=b"token=%ff%fe&csrf=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/html")  # the login page's error page


def test_a_form_in_an_unknown_charset_is_a_400(hub: HubProcess) -> None:
    resp = http(hub).post(
        base_url(hub) + "/login",
        data=b"token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"},
        allow_redirects=False,
    )
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "alert_id",
    [
        "99999999999999999999999999",  # was: 500 (OverflowError binding it for SQLite)
        "9223372036854775808",
        "0",
        "-1",
        "+5",
        "1e3",
        "%201",
        "%D9%A3",  # ARABIC-INDIC DIGIT THREE: int() takes it, an id is ASCII digits
    ],
)
def test_alert_ids_out_of_range_are_404(hub: HubProcess, admin: str, alert_id: str) -> None:
    resp = hub.client(token=admin).post(f"/v1/alerts/{alert_id}/ack")
    assert (resp.status, resp.code) == (404, "alert.unknown")


def test_the_largest_id_is_looked_up_and_not_found(hub: HubProcess, admin: str) -> None:
    resp = hub.client(token=admin).post("/v1/alerts/9223372036854775807/ack")
    assert (resp.status, resp.code) == (404, "alert.unknown")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/hosts/abc?x=1#y", "/hosts/abc?x=1#y"),
        ("/", "/"),
        ("//evil.example/x", "/"),
        ("/\t/evil.example/x", "/"),  # browsers drop the tab: //evil.example/x
        ("/\n/evil.example/x", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("/\\evil.example/x", "/"),
        ("/ok\\", "/"),
        ("/a b", "/"),
        ("/\x00", "/"),
        ("/caf\u00e9", "/"),
        ("https://evil.example/", "/"),
        ("evil", "/"),
        ("/" + "a" * 3000, "/"),
        ("", "/"),
    ],
)
def test_safe_next(given: str, expected: str) -> None:
    assert safe_next(given) == expected


@pytest.mark.parametrize("nxt", ["/x\ny", "/\t/evil.example/x", "/x\r\nLocation: //evil"])
def test_login_with_a_control_character_in_next_redirects_home(
    hub: HubProcess, admin: str, nxt: str
) -> None:
    # was: the response died while its Location header was written (a dropped connection,
    # after the session had been opened and audited); a tab gave /<TAB>/evil.example/x
    s = http(hub)
    form = s.get(base_url(hub) + "/login")
    resp = s.post(
        base_url(hub) + "/login",
        data={"token": admin, "csrf": form_csrf(form.text), "next": nxt},
        allow_redirects=False,
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/"


def test_the_login_page_keeps_only_a_safe_next(hub: HubProcess, tmp_path: Path) -> None:
    page = http(hub).get(base_url(hub) + "/login", params={"next": "/\t/evil.example"}).text
    assert "evil.example" not in page


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/hosts/%00", None),  # was on PostgreSQL: 500 (text cannot hold NUL)
        ("PUT", "/v1/hosts/{host}/flavors", {"flavors": ["a\u0000b"]}),  # was: 500 there too
        ("GET", "/v1/hosts/ab%00cd", None),
    ],
)
def test_text_with_a_nul_character_is_a_400_on_both_backends(
    hub: HubProcess, admin: str, method: str, path: str, body: object
) -> None:
    host = "cd" * 32
    hub.call(
        hub.state.store.register_host(
            host_id=host, state="approved", hostname="h", node_name="n", dmi_uuid=None, now=1.0
        )
    )
    resp = hub.client(token=admin).request(method, path.format(host=host), body)
    assert (resp.status, resp.code) == (400, "request.nul_character")
