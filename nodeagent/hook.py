"""``trustplane-agent hook``: the OCI hook that refuses containers on a host not attested trusted.

cri-o and podman run it at the ``createRuntime`` stage for containers annotated
``trustplane.io/require-trusted: "true"`` (``/usr/share/containers/oci/hooks.d/
trustplane-require-trusted.json``), with the container's OCI state JSON on stdin. It reads the
host's current signed trust report and the hub's JWS key from the agent's state directory
(:mod:`nodeagent.trustreport` says how they get there and what is checked) and returns
normally only when the report verifies, names this host, says ``trusted`` and has not expired.
Otherwise it raises :class:`~nodeagent.trustreport.TrustReportRefused`, which the CLI turns into
exit status 1 and one stderr line that the engine shows in its error.

The hook works without the daemon (it reads files) and never asks the hub: the signature is
what makes the stored report trustworthy.
"""

from __future__ import annotations

import json
import time
from typing import IO, Final

from nodeagent.state import StateDir, StateError
from nodeagent.trustreport import (
    TrustReport,
    TrustReportRefused,
    check_trust_report,
    load_public_key,
)

MAX_STATE_BYTES: Final = 64 * 1024
REQUIRE_ANNOTATION: Final = "trustplane.io/require-trusted"


def read_oci_state(stdin: IO[bytes]) -> dict[str, object]:
    """The OCI state JSON from the runtime (bounded). Raises :class:`TrustReportRefused`."""
    data = stdin.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise TrustReportRefused("the OCI state on stdin is too long", reason="hook.state_invalid")
    try:
        state = json.loads(data)
    except (ValueError, RecursionError):
        raise TrustReportRefused(
            "stdin does not hold the container's OCI state JSON", reason="hook.state_invalid"
        ) from None
    if not isinstance(state, dict):
        raise TrustReportRefused(
            "stdin does not hold the container's OCI state JSON", reason="hook.state_invalid"
        )
    return state


def check_host(state: StateDir, now: float | None = None) -> TrustReport:
    """Whether this host may start a container that requires a trusted platform.

    Raises :class:`TrustReportRefused` (``hook.not_enrolled``, ``hook.report_missing``,
    ``hook.key_missing``, and :func:`check_trust_report`'s reasons).
    """
    try:
        enrollment = state.load_enrollment()
        token = state.load_trust_report()
    except StateError as e:
        raise TrustReportRefused(e.message, reason="hook.state_unusable") from None
    if enrollment is None or enrollment.status != "enrolled":
        raise TrustReportRefused(
            "this host is not enrolled with a trustplane hub", reason="hook.not_enrolled"
        )
    if token is None:
        raise TrustReportRefused(
            "no signed trust report yet (the agent has not reported)",
            reason="hook.report_missing",
        )
    try:
        with state.hub_jws_key.open("rb") as f:
            pem = f.read(8192)
    except FileNotFoundError:
        raise TrustReportRefused(
            "the hub's trust-report key is not known yet (the agent fetches it after a report)",
            reason="hook.key_missing",
        ) from None
    except OSError as e:
        raise TrustReportRefused(
            f"cannot read {state.hub_jws_key}: {e.strerror or e}", reason="hook.state_unusable"
        ) from None
    return check_trust_report(
        token, load_public_key(pem), enrollment.host_id, time.time() if now is None else now
    )
