"""``trustplane demo``: a hub and three TPM-attested hosts on this machine, one of which goes bad.

Everything is real and on 127.0.0.1 with TLS: ``trustplane-hub init`` and ``run`` (a subprocess
with its own state directory), three ``trustplane-agent run`` subprocesses, each with its own
swtpm manufactured with its own EK (certificate from the swtpm factory's local CA, which the
hub's ``enrollment.ek_ca_bundle`` trusts). Each TPM is booted from a real UEFI event log of the
shared corpus (:mod:`trustplane.tpmboot`) and the agent reports that log.

The scenario: the hosts enroll and attest; flavors are imported from host-1's verified report
(``trustplane-hub flavor import --from-host``) and assigned to all three; all become trusted with
the flavors; then host-3 "reboots" into a kernel update (its agent stops, its swtpm restarts with
reset PCRs and is booted from ``test-update.bin``, the agent starts again and attests at once),
turns untrusted with the flavor reason ids and the first differing event in words, and the hub
raises an alert. Then the encrypted-image step (:mod:`trustplane.demoimages`): key policy
``region-eu``, host-1 and host-2 tagged ``region=EU`` and host-2 retagged ``region=US``, a
demo-made image encrypted and pushed to a docker-registry on 127.0.0.1, decrypted by host-1,
refused to host-2 (``release.assettag_mismatch``) and host-3 (``release.host_untrusted``).
Progress goes to stderr. Interactive mode then prints the status page URL and
the admin token and runs until Ctrl-C or SIGTERM; ``--once --json`` prints one JSON line
``{"hosts": [{"name", "verdict", "reasons", "explanation"}], "alerts": N, "images":
{"encrypted_by", "image", "hosts": {"host-1": {"decrypted": true}, "host-2": {"decrypted":
false, "reason", "message"}, ...}}}`` (``reasons`` are reason ids, ``explanation`` one sentence
for a person) and exits 0. Any failed or timed-out
step (every wait is bounded) exits 1 with one line on stderr. Every process the demo starts is
stopped and the working directory removed on every way out.

The flavor logic, the verification and the agent are the packages' own; this module only
orchestrates processes and polls the hub's JSON API.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, TypeVar

from trustcore.errors import TrustcoreError
from trustplane.demoimages import ImageOptions, ImageStep, ImageStepFailure, keys_socket
from trustplane.swtpm import Swtpm, SwtpmFactory, SwtpmUnavailable, die_with_parent, free_port
from trustplane.tpmboot import boot_from_eventlog

__all__ = ["DemoFailure", "DemoOptions", "run_demo"]

T = TypeVar("T")

BEFORE_LOG: Final = Path("guard-oss-evidence", "test-before.bin")
UPDATE_LOG: Final = Path("guard-oss-evidence", "test-update.bin")
HOSTS: Final = ("host-1", "host-2", "host-3")
FLAVOR_NAME: Final = "demo"
ASSIGNED: Final = ("demo.platform", "demo.os")
QUOTED_PCRS: Final = tuple(range(10))  # platform PCRs 0-7, os PCRs 8-9
PREFERRED_PORT: Final = 8443
REPORT_INTERVAL: Final = 10  # seconds between an agent's reports (hub's next_report_in)
STOP_GRACE: Final = 10.0


class DemoFailure(Exception):
    """A step failed or timed out; the message is the one line the user sees."""


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop everything and leave."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    once: bool = False
    json: bool = False
    eventlogs: Path = Path()
    step_timeout: float = 60.0
    kubeconfig: Path | None = None  # register this cluster (host-N -> node host-N)
    skopeo: str | None = None


class Progress:
    """Progress lines on stderr, with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - self.start:5.1f}s] {text}\n")
        sys.stderr.flush()


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass
class Children:
    """The subprocesses the demo started (each in its own session, so Ctrl-C reaches only
    the demo, which stops them in order)."""

    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads run yet in the demo
            )
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_GRACE)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def wait_until(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll ``check`` until it returns a value; raises :class:`DemoFailure` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise DemoFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


# --- the hub ---------------------------------------------------------------------------------


@dataclass
class HubRun:
    """The hub subprocess, its files and an HTTPS client for its JSON API."""

    dir: Path
    port: int
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.dir / "hub.toml"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def ca_file(self) -> Path:
        return self.state / "ca.pem"

    def cli(self, command: Sequence[str], *args: str) -> str:
        """Run ``trustplane-hub COMMAND --config hub.toml ARGS``; its stdout, or DemoFailure."""
        argv = _python("hub.cli", *command, "--config", str(self.config), *args)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()
            words = " ".join((*command, *args))
            raise DemoFailure(f"trustplane-hub {words}: {err[-1] if err else done.returncode}")
        return done.stdout

    def get(self, path: str) -> Any:  # noqa: ANN401 - JSON
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise DemoFailure(f"GET {path}: HTTP {resp.status}: {body[:200]!r}")
        return json.loads(body)

    def healthy(self) -> bool | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoFailure(f"the hub exited with {self.proc.returncode}")
        try:
            return True if self.get("/health") == {"status": "ok"} else None
        except (OSError, ssl.SSLError, DemoFailure):
            return None


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", PREFERRED_PORT))
        except OSError:
            return free_port()
    return PREFERRED_PORT


# --- a real cluster, when the user names one ---------------------------------------------------

CLUSTER_NAME: Final = "demo"


def node_uuids(kubeconfig: Path, names: Sequence[str]) -> dict[str, str]:
    """The ``systemUUID`` of each node in ``names`` that the cluster has (through the hub's own
    client, kubernetes_asyncio); DemoFailure when the cluster cannot be read."""
    import asyncio  # noqa: PLC0415 - only for a cluster

    from hub.clusters.client import KubeClient  # noqa: PLC0415 - only for a cluster
    from hub.clusters.errors import ClusterError  # noqa: PLC0415

    async def read() -> dict[str, str]:
        client = await KubeClient.connect(kubeconfig.read_bytes(), None)
        try:
            nodes, _ = await client.list_nodes(timeout=20)
        finally:
            await client.close()
        out = {}
        for node in nodes:
            name = str(node.get("metadata", {}).get("name", ""))
            found = str((node.get("status", {}).get("nodeInfo") or {}).get("systemUUID", ""))
            if name in names and found:
                out[name] = found.lower()
        return out

    try:
        return asyncio.run(read())
    except (ClusterError, OSError) as e:
        raise DemoFailure(f"cannot read the nodes of {kubeconfig}: {e}") from None


def node_trust(kubeconfig: Path, name: str) -> tuple[str, list[str]]:
    """The node's ``trusted`` label and its taint keys, read from the cluster."""
    import asyncio  # noqa: PLC0415 - only for a cluster

    from hub.clusters.client import KubeClient  # noqa: PLC0415 - only for a cluster
    from hub.clusters.errors import ClusterError  # noqa: PLC0415
    from hub.clusters.labels import TRUSTED  # noqa: PLC0415

    async def read() -> tuple[str, list[str]]:
        client = await KubeClient.connect(kubeconfig.read_bytes(), None)
        try:
            node = await client.get_node(name)
        finally:
            await client.close()
        labels = node.get("metadata", {}).get("labels") or {}
        taints = [str(t.get("key")) for t in node.get("spec", {}).get("taints") or []]
        return str(labels.get(TRUSTED, "")), taints

    try:
        return asyncio.run(read())
    except (ClusterError, OSError) as e:
        raise DemoFailure(f"cannot read node {name}: {e}") from None


def wait_node_untrusted(kubeconfig: Path, name: str, timeout: float) -> None:
    def check() -> bool | None:
        trusted, taints = node_trust(kubeconfig, name)
        return True if trusted == "false" and "trustplane.io/untrusted" in taints else None

    wait_until(f"node {name} to be labelled untrusted and tainted", check, timeout)


def register_cluster(hub: HubRun, kubeconfig: Path, say: Progress) -> None:
    hub.cli(["clusters", "add"], CLUSTER_NAME, "--kubeconfig", str(kubeconfig))
    say(f"$ trustplane-hub clusters add {CLUSTER_NAME} --kubeconfig {kubeconfig}")


def wait_cluster(hub: HubRun, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for c in hub.get("/v1/clusters")["clusters"]:
            if c["name"] == CLUSTER_NAME and c["last_sync"] is not None:
                return dict(c)
        return None

    return wait_until(f"cluster {CLUSTER_NAME} to be synced", check, timeout)


def write_hub_config(hub: HubRun, bundle: Path) -> None:
    hub.config.write_text(
        f'[server]\nlisten = "127.0.0.1:{hub.port}"\n\n'
        f'[state]\ndir = "{hub.state}"\n\n'
        f"[attestation]\ninterval = {REPORT_INTERVAL}\n\n"
        f'[enrollment]\nek_ca_bundle = "{bundle}"\nrequire_ek_certificate = true\n\n'
        f'[alerts]\nexternal_url = "{hub.url}"\n'
    )


def start_hub(work: Path, factory: SwtpmFactory, children: Children, say: Progress) -> HubRun:
    """``trustplane-hub init`` and ``run``; on a port taken meanwhile, again on a free one."""
    hub = HubRun(work / "hub", _port())
    hub.dir.mkdir()
    bundle = hub.dir / "tpm-vendor-ca.pem"
    bundle.write_bytes(b"".join(p.read_bytes() for p in factory.ca_certificates))
    write_hub_config(hub, bundle)
    out = hub.cli(["init"])
    hub.token = out.strip().rsplit(" ", 1)[-1]
    say(f"hub: state in {hub.state} (CA, server certificate, signing keys, SQLite)")
    log = hub.dir / "hub.log"
    for attempt in range(3):
        hub.proc = children.start(_python("hub.cli", "run", "--config", str(hub.config)), log)
        try:
            wait_until("the hub to answer /health", hub.healthy, 30)
            break
        except DemoFailure:
            if attempt == 2 or "address already in use" not in log.read_text(errors="replace"):
                raise
            children.stop(hub.proc)
            log.unlink()
            hub.port = free_port()
            write_hub_config(hub, bundle)
    say(f"hub: listening on {hub.url} (TLS); EK certificates must chain to the local TPM CA")
    return hub


# --- the hosts -------------------------------------------------------------------------------


@dataclass
class HostRun:
    """One simulated host: a swtpm, an agent config and state, the agent subprocess."""

    name: str
    dir: Path
    tpm: Swtpm
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.dir / "agent.toml"

    @property
    def uefi_log(self) -> Path:
        return self.dir / "uefi-eventlog.bin"

    def write_config(self, hub: HubRun, product_uuid: str | None = None) -> None:
        (self.dir / "product_uuid").write_text(f"{product_uuid or uuid.uuid4()}\n")
        self.config.write_text(
            f'state_dir = "{self.dir / "state"}"\n\n'
            f'[hub]\nurl = "{hub.url}"\nca_file = "{hub.ca_file}"\nnode_name = "{self.name}"\n'
            f'hostname = "{self.name}"\n\n'
            f'[tpm]\ntcti = "{self.tpm.tcti}"\nwatch_devices = false\n'
            f"pcrs = {list(QUOTED_PCRS)}\n\n"
            f'[evidence]\nuefi_log = "{self.uefi_log}"\ntxt = false\n'
            f'dmi_uuid = "{self.dir / "product_uuid"}"\nboot_id = "{self.dir / "boot_id"}"\n\n'
            f"[attestation]\ninterval = {REPORT_INTERVAL}\nbackoff_initial = 0.2\n"
            "backoff_max = 2\n\n"
            f'[keys]\nsocket = "{keys_socket(self.dir)}"\n'
        )

    def boot(self, log: Path) -> int:
        """Boot the TPM from ``log``, hand the agent a copy of it, and a new boot id."""
        count = boot_from_eventlog(self.tpm, log)
        shutil.copyfile(log, self.uefi_log)
        (self.dir / "boot_id").write_text(f"{uuid.uuid4()}\n")
        return count

    def start_agent(self, children: Children) -> None:
        argv = _python("nodeagent.cli", "--config", str(self.config), "run")
        self.proc = children.start(argv, self.dir / "agent.log")


def start_host(  # noqa: PLR0917
    name: str,
    work: Path,
    factory: SwtpmFactory,
    hub: HubRun,
    children: Children,
    log: Path,
    say: Progress,
    product_uuid: str | None = None,
) -> HostRun:
    host = HostRun(name, work / name, factory.start(unique=True))
    host.dir.mkdir()
    count = host.boot(log)
    say(
        f"{name}: swtpm with its own EK (certificate from the local TPM CA); "
        f"PCRs extended with the {count} measured events of {log.name}"
    )
    host.write_config(hub, product_uuid)
    host.start_agent(children)
    return host


def reboot_host(host: HostRun, children: Children, log: Path) -> int:
    """Stop the agent, restart the swtpm (PCRs back at their reset values), boot ``log``,
    start the agent again (it attests at start). Returns the events extended."""
    if host.proc is not None:
        children.stop(host.proc)
    host.tpm.stop()
    for attempt in range(5):
        try:
            host.tpm.start()
            break
        except SwtpmUnavailable:
            if attempt == 4:
                raise
            time.sleep(0.5)
    count = host.boot(log)
    host.start_agent(children)
    return count


# --- watching the hub ------------------------------------------------------------------------


def _hosts(hub: HubRun, hosts: Sequence[HostRun]) -> dict[str, dict[str, Any]]:
    """The hub's view of the demo's hosts by node name; fails when an agent died."""
    for host in hosts:
        if host.proc is not None and host.proc.poll() is not None:
            raise DemoFailure(f"{host.name}: the agent exited with {host.proc.returncode}")
    listed = hub.get("/v1/hosts")["hosts"]
    return {h["node_name"]: h for h in listed if h.get("node_name") in {x.name for x in hosts}}


def wait_reported(hub: HubRun, hosts: Sequence[HostRun], timeout: float) -> dict[str, str]:
    """Wait until every host is enrolled and has reported; returns name -> host id."""

    def check() -> dict[str, str] | None:
        seen = _hosts(hub, hosts)
        done = {n: h for n, h in seen.items() if h["state"] == "enrolled" and h["last_report"]}
        return {n: h["id"] for n, h in done.items()} if len(done) == len(hosts) else None

    return wait_until("the hosts to enroll and report", check, timeout)


def _detail(hub: HubRun, host_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = hub.get(f"/v1/hosts/{host_id}")
    return detail


def wait_verdict(
    hub: HubRun,
    hosts: Sequence[HostRun],
    ids: dict[str, str],
    verdict: str,
    *,
    since: float,
    timeout: float,
) -> dict[str, dict[str, Any]]:
    """Wait until each host has reported after ``since`` (hub time) with ``verdict`` against
    the assigned flavors; returns name -> host detail."""

    def check() -> dict[str, dict[str, Any]] | None:
        _hosts(hub, hosts)  # fails early if an agent died
        out = {}
        for host in hosts:
            d = _detail(hub, ids[host.name])
            if (
                d["verdict"] != verdict
                or (d["last_report"] or 0) < since
                or tuple(d["flavors"]) != ASSIGNED
                or not d["rules"]
            ):
                return None
            out[host.name] = d
        return out

    names = ", ".join(h.name for h in hosts)
    return wait_until(f"{names} to be {verdict} against the flavors", check, timeout)


TRUSTED_EXPLANATION: Final = "the quote verified, the event logs replayed, the flavors matched"


def explain(detail: dict[str, Any]) -> str:
    """One sentence for a person: the first differing event in words when a rule found one."""
    differences = [str(r["difference"]) for r in detail["rules"] if r.get("difference")]
    if differences:
        return differences[0]
    if detail["verdict"] == "trusted":
        return TRUSTED_EXPLANATION
    return f"{detail['verdict']}: {', '.join(str(r) for r in detail['reasons'])}"


def summarise(name: str, detail: dict[str, Any]) -> dict[str, Any]:
    """A host's line of the JSON summary: reason ids only, the sentence apart."""
    return {
        "name": name,
        "verdict": detail["verdict"],
        "reasons": [str(r) for r in detail["reasons"]],
        "explanation": explain(detail),
    }


def wait_alert(hub: HubRun, host_id: str, since: float, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for alert in hub.get("/v1/alerts")["alerts"]:
            if alert["host_id"] == host_id and alert["at"] >= since:
                found: dict[str, Any] = alert
                return found
        return None

    return wait_until("the hub's alert", check, timeout)


# --- the scenario ----------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def assign_flavors(hub: HubRun, hosts: Sequence[HostRun], say: Progress) -> None:
    args = ("--from-host", hosts[0].name, "--name", FLAVOR_NAME)
    out = hub.cli(["flavor", "import"], *args)
    say(f"$ trustplane-hub flavor import {' '.join(args)}")
    for line in out.splitlines():
        say(f"    {line.expandtabs(2)}")
    say(
        f"    ({FLAVOR_NAME}.host_unique: {hosts[0].name}'s own boot entries and disks, unassigned)"
    )
    for host in hosts:
        hub.cli(["flavor", "assign"], host.name, *ASSIGNED)
        say(f"$ trustplane-hub flavor assign {host.name} {' '.join(ASSIGNED)}")
        if host.proc is not None:
            host.proc.send_signal(signal.SIGUSR1)  # attest now rather than at the next interval


def scenario(
    work: Path, factory: SwtpmFactory, children: Children, options: DemoOptions, say: Progress
) -> dict[str, Any]:
    """Run the story to the end; returns the JSON summary."""
    timeout = options.step_timeout
    before, update = options.eventlogs / BEFORE_LOG, options.eventlogs / UPDATE_LOG
    hub = start_hub(work, factory, children, say)
    uuids: dict[str, str] = {}
    if options.kubeconfig is None:
        say(
            "cluster sync: skipped (no cluster given); to label real nodes host-1..3, run "
            'make demo ARGS="--kubeconfig FILE" with any kubeconfig (kind, minikube, OpenShift)'
        )
    else:
        uuids = node_uuids(options.kubeconfig, HOSTS)
        missing = [n for n in HOSTS if n not in uuids]
        say(
            f"cluster: nodes {', '.join(uuids) or 'none'} found; each host claims its node's "
            "system UUID as its DMI UUID"
            + (f"; no node {', '.join(missing)} (those hosts map to nothing)" if missing else "")
        )
    hosts = [start_host(n, work, factory, hub, children, before, say, uuids.get(n)) for n in HOSTS]
    ids = wait_reported(hub, hosts, timeout)
    say("hosts enrolled (EK certificate chain, MakeCredential/ActivateCredential) and reported")
    since = time.time()
    assign_flavors(hub, hosts, say)
    wait_verdict(hub, hosts, ids, "trusted", since=since, timeout=timeout)
    say(f"{', '.join(HOSTS)}: trusted (quotes verified, logs replayed, flavors matched)")
    if options.kubeconfig is not None:
        register_cluster(hub, options.kubeconfig, say)
        state = wait_cluster(hub, timeout)
        say(
            f"cluster {CLUSTER_NAME}: {state['nodes_matched']} of {state['nodes']} nodes matched "
            "and labelled trustplane.node-restriction.kubernetes.io/trusted=true"
            + (f" (last error: {state['last_error']})" if state["last_error"] else "")
        )
    bad = hosts[-1]
    say(f"{bad.name}: rebooting into a kernel update ({update.name}: PCRs 4, 8 and 9 change)")
    since = time.time()
    count = reboot_host(bad, children, update)
    say(f"{bad.name}: swtpm restarted, PCRs extended with the {count} events of {update.name}")
    untrusted = wait_verdict(hub, [bad], ids, "untrusted", since=since, timeout=timeout)
    detail = untrusted[bad.name]
    words = "; ".join([*map(str, detail["reasons"]), explain(detail)])
    say(f"{bad.name}: untrusted {time.time() - since:.1f}s after the reboot: {words}")
    if options.kubeconfig is not None and bad.name in uuids:
        wait_node_untrusted(options.kubeconfig, bad.name, timeout)
        say(
            f"cluster {CLUSTER_NAME}: node {bad.name} trusted=false, taint "
            f"trustplane.io/untrusted {time.time() - since:.1f}s after the reboot "
            f"(kubectl describe node {bad.name}: the TrustLost Event)"
        )
    alert = wait_alert(hub, ids[bad.name], since, timeout)
    say(f"alert {alert['id']}: {bad.name} {alert['kind']} ({', '.join(alert['reasons'])})")
    summary = []
    for host in hosts:
        d = _detail(hub, ids[host.name])
        summary.append(summarise(host.name, d))
    alerts = len(hub.get("/v1/alerts")["alerts"])
    try:
        images = ImageStep(work, hub, hosts, ImageOptions(options.skopeo, timeout), say).run(ids)
    except ImageStepFailure as e:
        raise DemoFailure(str(e)) from None
    result = {"hosts": summary, "alerts": alerts, "images": images}
    if not options.once:
        interact(hub, ids[bad.name], say)
    return result


def interact(hub: HubRun, bad_id: str, say: Progress) -> None:
    """Print where to look and keep everything running until Ctrl-C or SIGTERM."""
    say(f"status page: {hub.url}/  (log in with the admin token)")
    say(f"admin token: {hub.token}")
    say(f"host-3 in detail: {hub.url}/hosts/{bad_id}; alerts: {hub.url}/alerts")
    say(f"the hub's TLS certificate is signed by {hub.ca_file} (curl --cacert ...)")
    say("running; press Ctrl-C to stop every process and remove the working directory")
    while True:
        time.sleep(1)
        if hub.proc is not None and hub.proc.poll() is not None:
            raise DemoFailure(f"the hub exited with {hub.proc.returncode}")


def _tails(work: Path, lines: int = 5) -> None:
    for log in sorted(work.glob("*/*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        for line in text:
            sys.stderr.write(f"  {log.parent.name}: {line}\n")


def check_eventlogs(eventlogs: Path) -> None:
    for log in (BEFORE_LOG, UPDATE_LOG):
        if not (eventlogs / log).is_file():
            raise DemoFailure(
                f"{eventlogs / log} not found (the repository carries it in tests/data/eventlogs)"
            )


def run_demo(options: DemoOptions) -> int:
    """Run the demo (see the module docstring); returns the exit code (0, or 1 on failure)."""
    say = Progress()
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    work = Path(tempfile.mkdtemp(prefix="trustplane-demo-"))
    children = Children()
    factory: SwtpmFactory | None = None
    code = 1
    try:
        say(f"working directory {work}")
        check_eventlogs(options.eventlogs)
        factory = SwtpmFactory(work / "swtpm")
        result = scenario(work, factory, children, options, say)
        if options.json:
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            for host in result["hosts"]:
                reasons = ", ".join(host["reasons"])
                sys.stdout.write(
                    f"{host['name']}\t{host['verdict']}\t{reasons}\t{host['explanation']}\n"
                )
            sys.stdout.write(f"alerts\t{result['alerts']}\n")
            for name, outcome in result["images"]["hosts"].items():
                what = "decrypted" if outcome["decrypted"] else f"refused\t{outcome['reason']}"
                sys.stdout.write(f"image\t{name}\t{what}\n")
        code = 0
    except Interrupted as e:
        say(f"{e}: stopping")
        code = 1 if options.once else 0
    except DemoFailure as e:
        _tails(work)
        sys.stderr.write(f"trustplane demo: {e}\n")
    except (OSError, RuntimeError, subprocess.SubprocessError, TrustcoreError) as e:
        _tails(work)
        sys.stderr.write(f"trustplane demo: {type(e).__name__}: {' '.join(str(e).split())}\n")
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        children.stop_all()
        if factory is not None:
            factory.close()
        shutil.rmtree(work, ignore_errors=True)
        say(f"stopped every process the demo started and removed {work}")
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
