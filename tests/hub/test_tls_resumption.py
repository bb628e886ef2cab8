"""TLS session resumption between the agent's hub client and the real hub: the agent's next
connection resumes the last one's session (nodeagent.tlssession), the hub still knows the host
from the certificate in the ticket, and refuses a resumed session whose certificate expired."""

from __future__ import annotations

import asyncio

import pytest

from nodeagent.config import HubConfig
from nodeagent.hubclient import HubClient, HubRejected
from nodeagent.tlssession import ResumingContext
from tests.hub.harness import Agent, HubProcess

DAY = 86400.0


def client(hub: HubProcess, agent: Agent) -> HubClient:
    assert agent.cert_files is not None
    return HubClient(
        HubConfig(url=f"https://127.0.0.1:{hub.port}"), ca_file=hub.ca_file, client=agent.cert_files
    )


def test_a_new_connection_resumes_the_last_session_and_is_the_same_host(
    hub: HubProcess, agent: Agent
) -> None:
    async def go() -> list[bool | None]:
        hub_client = client(hub, agent)
        ctx = hub_client._ssl
        assert isinstance(ctx, ResumingContext)
        seen = [ctx.resumed("127.0.0.1")]
        for _ in range(3):
            challenge = await hub_client.challenge()  # an agent-only route: mTLS identity
            assert len(challenge.nonce) == 32
            seen.append(ctx.resumed("127.0.0.1"))
            await hub_client.close()  # the next call opens a new connection
        return seen

    assert asyncio.run(go()) == [None, False, True, True]


def test_a_resumed_session_with_an_expired_certificate_is_refused(
    hub: HubProcess, agent: Agent
) -> None:
    async def go() -> HubRejected:
        hub_client = client(hub, agent)
        await hub_client.challenge()  # full handshake: the ticket arrives
        await hub_client.close()
        # the agent's certificate is valid for enrollment.client_cert_days (30); on the hub's
        # clock 31 days have passed when the agent comes back with its ticket
        hub.clock.advance(31 * DAY)
        try:
            with pytest.raises(HubRejected) as info:
                await hub_client.challenge()
        finally:
            hub.clock.advance(-31 * DAY)
            await hub_client.close()
        ctx = hub_client._ssl
        assert isinstance(ctx, ResumingContext)
        assert ctx.resumed("127.0.0.1") is True
        return info.value

    refused = asyncio.run(go())
    assert (refused.status, refused.code) == (401, "auth.client_certificate_expired")
