"""The web forms and page paths under fuzzed input (issue 11's sweep, beside schemathesis's
sweep of the JSON API in test_openapi.py): random bytes in every content type, control
characters and invalid UTF-8 in the fields, random path parameters. No answer may be a 5xx and
no connection may be dropped (requests raises on a dropped connection, failing the example)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hub.harness import HubProcess
from tests.hub.weblib import base_url, form_csrf, http, login, start_hub

EXAMPLES = 150

CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/x-www-form-urlencoded; charset=bogus",
        "multipart/form-data; boundary=xYz",
        "multipart/form-data",
        "text/plain",
        "application/json",
        "",
    ]
)
FIELD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=64
) | st.sampled_from(["/\t/evil.example", "/x\r\nSet-Cookie: a=b", "//evil", "\x00", "%ff%fe"])
FIELDS = st.dictionaries(
    st.sampled_from(["token", "csrf", "next", "x", "token[]"]), FIELD_TEXT, max_size=4
)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = start_hub(tmp_path_factory.mktemp("form-fuzz"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def session(hub: HubProcess) -> requests.Session:
    return login(hub, hub.token("admin", "fuzz"))


def _check(resp: requests.Response) -> None:
    assert resp.status_code < 500, (resp.request.method, resp.request.url, resp.text[:300])


def _post(
    s: requests.Session, url: str, body: bytes | dict[str, str], content_type: str
) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return s.post(url, data=body, headers=headers, allow_redirects=False, timeout=10)


def test_login_form_fuzz(hub: HubProcess) -> None:
    s = http(hub)
    csrf = form_csrf(s.get(base_url(hub) + "/login").text)

    @SETTINGS
    @given(
        raw=st.binary(max_size=512), fields=FIELDS, content_type=CONTENT_TYPES, form=st.booleans()
    )
    def run(raw: bytes, fields: dict[str, str], content_type: str, form: bool) -> None:
        body: bytes | dict[str, str] = {"csrf": csrf, **fields} if form else raw
        _check(_post(s, base_url(hub) + "/login", body, content_type))

    run()


def test_page_form_fuzz_with_a_session(hub: HubProcess, session: requests.Session) -> None:
    page = session.get(base_url(hub) + "/alerts")
    assert page.status_code == 200
    csrf = form_csrf(page.text)

    @SETTINGS
    @given(
        raw=st.binary(max_size=512),
        fields=FIELDS,
        content_type=CONTENT_TYPES,
        form=st.booleans(),
        alert=st.integers(min_value=-(2**80), max_value=2**80).map(str)
        | st.text(max_size=24).map(lambda t: quote(t, safe="")),
    )
    def run(raw: bytes, fields: dict[str, str], content_type: str, form: bool, alert: str) -> None:
        body: bytes | dict[str, str] = {"csrf": csrf, **fields} if form else raw
        _check(_post(session, f"{base_url(hub)}/alerts/{alert or '1'}/ack", body, content_type))

    run()
    # logout last: fuzzed bodies, then a real one
    for body in (b"\xff\xfe", b"csrf=%ff", {"csrf": "wrong"}):
        for content_type in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
            _check(_post(session, base_url(hub) + "/logout", body, content_type))


def test_page_path_fuzz(hub: HubProcess, session: requests.Session) -> None:
    @SETTINGS
    @given(
        segment=st.text(max_size=80).map(lambda t: quote(t, safe="")),
        query=st.text(max_size=40).map(lambda t: quote(t, safe="=&")),
    )
    def run(segment: str, query: str) -> None:
        for path in (f"/hosts/{segment or 'x'}", f"/login?next={query}", f"/?{query}"):
            _check(session.get(base_url(hub) + path, allow_redirects=False, timeout=10))

    run()
