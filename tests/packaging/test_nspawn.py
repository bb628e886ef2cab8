"""The shipped units under a real systemd: the agent and the hub in a systemd-nspawn container.

Each test boots this host's own systemd as PID 1 of a throwaway container (``systemd-nspawn
--directory=/ --volatile=yes``: the host's /usr read-only, every other directory a fresh
tmpfs, so /etc starts empty and the boot is a first boot, into basic.target with
systemd-firstboot off: about half a second) with the repository's units in
/etc/systemd/system byte for byte as shipped, the sysusers.d and tmpfiles.d files in /etc so
that the boot creates the users and directories as an installed package does, and the example
configs as /etc/trustplane/*.toml. A drop-in per unit (and a config drop-in per daemon) changes
only what a test has to: the program path (the repository's virtualenv instead of /usr/bin),
the evidence files the credentials are loaded from, the hub address and short timings. The
hardening stays as shipped, which is what these tests prove workable.

The container shares the host's network, so the agent inside reaches a swtpm and the real hub
(tests/nodeagent's LoopbackHub; its JSON reader is wrapped to keep every report body, so the
tests see which evidence arrived) on the host's 127.0.0.1. Stopping that swtpm (SIGSTOP) hangs
the agent's TPM call, the agent withholds its watchdog pings and systemd must kill and restart
it. With no evidence files at all, the shipped SetCredential= placeholders must let it start.

No D-Bus or machined is needed on the host (PID 1 here need not be systemd): nspawn runs with
``--register=no --keep-unit``, and commands run inside through ``nsenter`` into the container's
namespaces (systemctl then talks to PID 1 over its private socket). Whatever happens, the
container is halted (SIGTERM to nspawn, then SIGKILL).

The virtualenv's interpreter may live under /root (pyenv): ProtectHome=yes hides that from the
service, as it should. The base Python installation is then bound at /opt/trustplane-python and
a stand-in virtualenv at /opt/trustplane-venv (its site-packages are the real ones) runs the
real venv's console scripts; the units' sandbox is untouched.

Needs root and systemd-nspawn (Debian package systemd-container, in the Makefile's
APT_PACKAGES); without them the tests fail.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from hub import attestation as hub_attestation
from hub.config import HubConfig
from hub.errors import read_json
from tests.conftest import REPO
from tests.hub.conftest import ca_bundle
from tests.hub.harness import make_state
from tests.nodeagent.conftest import BOOT_LOG, LoopbackHub, extend_from_log
from trustcore.wire import MissingEvidence, Report, ReportBody
from trustplane.swtpm import Swtpm, SwtpmFactory, free_port

SYSTEMD = REPO / "systemd"
VENV = Path(sys.prefix)
BASE_PYTHON = Path(sys.base_prefix)
PYTHON_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
HIDDEN_BY_PROTECT_HOME = (Path("/root"), Path("/home"), Path("/run/user"))
OPT_PYTHON = "/opt/trustplane-python"
OPT_VENV = "/opt/trustplane-venv"
EVIDENCE = "/srv/trustplane-evidence"
DMI_UUID = "4C4C4544-0042-3510-8052-B4C04F564433"
CONTAINER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 30.0


def nspawn() -> str:
    path = shutil.which("systemd-nspawn")
    assert path, "systemd-nspawn not found: install the Debian package systemd-container"
    return path


class Container:
    """This host's OS booted with systemd-nspawn; ``run`` executes commands inside it."""

    def __init__(self, name: str, binds: Sequence[tuple[Path, str]], console: Path) -> None:
        self.name = name
        self.binds = binds
        self.console = console
        self.process: subprocess.Popen[bytes] | None = None
        self.init_pid = 0

    def boot(self) -> None:
        cmd = [
            nspawn(),
            "--directory=/",
            "--volatile=yes",
            f"--machine={self.name}-{os.getpid()}",
            "--register=no",  # no machined/D-Bus needed on the host
            "--keep-unit",  # stay in the caller's cgroup: no scope unit from a host systemd
            "--quiet",
            "--console=passive",
            *(f"--bind-ro={source}:{target}" for source, target in self.binds),
            "--boot",
            "--",
            "systemd.unit=basic.target",
            "systemd.firstboot=off",
        ]
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        with self.console.open("wb") as out:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.init_pid = self._wait_for_init()
        self.wait_for(self._booted, BOOT_TIMEOUT, "the container's systemd to finish booting")

    def _wait_for_init(self) -> int:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited: {self.console.read_text()}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            time.sleep(0.02)
        raise AssertionError(f"no systemd in the container: {self.console.read_text()}")

    def _booted(self) -> bool:
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    def _enter(self) -> list[str]:
        """nsenter into the container's mount, UTS, IPC and PID namespaces, root and cwd."""
        return ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-p", "-r", "-w"]

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``cmd`` in the container's namespaces, as its root."""
        result = subprocess.run(
            [*self._enter(), *cmd],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={"PATH": CONTAINER_PATH, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}{result.stderr}"
                f"\n{self.journal()}"
            )
        return result

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str | None = None) -> str:
        which = ["--unit", unit] if unit else []
        result = subprocess.run(
            [*self._enter(), "journalctl", "--no-pager", "--output=short-monotonic", *which],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env={"PATH": CONTAINER_PATH},
        )
        return result.stdout[-12000:]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.journal()}")
            time.sleep(0.05)

    def halt(self) -> None:
        """Halt the container (nspawn turns SIGTERM into a clean shutdown), then kill it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            if self.init_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.init_pid, signal.SIGKILL)  # ends every process inside
            self.process.kill()
            self.process.wait(timeout=15)


def _publish(path: Path) -> None:
    """World-readable, as the packaged files are for the services' users (holds no symlinks)."""
    for p in [path, *path.rglob("*")]:
        assert not p.is_symlink(), p
        p.chmod(0o755 if p.is_dir() else 0o644)


HIDDEN_BY_PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))


def _private_tmp_binds() -> list[str]:
    """A checkout under /tmp (CI may clone there) is hidden from the service by PrivateTmp=yes:
    bind it into the service's namespace at the same path, read-only. Only the paths move; the
    sandbox stays as shipped (systemd mounts the deeper bind over the private /tmp)."""
    return [
        f"BindReadOnlyPaths={p}"
        for p in dict.fromkeys((REPO, VENV))
        if any(p.is_relative_to(t) for t in HIDDEN_BY_PRIVATE_TMP)
    ]


def _let_services_traverse(*paths: Path) -> None:
    """The units run as their own users, which must reach the checkout's scripts: a checkout
    made in ``mktemp -d`` (mode 0700) would deny them. Add search permission (x, never read)
    for others on each directory from ``/`` down to every path, where it lacks it."""
    for path in paths:
        for d in (*reversed(path.parents), path):
            mode = d.stat().st_mode
            if not mode & 0o001:
                d.chmod(mode & 0o7777 | 0o001)


def _python_binds(tmp: Path) -> tuple[str, list[str], list[tuple[Path, str]]]:
    """(interpreter path inside, extra unit lines, binds) for running the venv's scripts."""
    assert not any(p.is_relative_to(h) for p in (REPO, VENV) for h in HIDDEN_BY_PROTECT_HOME), (
        f"the units' ProtectHome=yes hides {REPO} and {VENV}: use a checkout outside /home"
    )
    _let_services_traverse(REPO, VENV)
    binds = [(REPO, str(REPO))]
    if not VENV.is_relative_to(REPO):
        binds.append((VENV, str(VENV)))
    if not any(BASE_PYTHON.is_relative_to(p) for p in HIDDEN_BY_PROTECT_HOME):
        return str(VENV / "bin" / "python3"), [], binds
    shim = tmp / "venv-shim"
    (shim / "bin").mkdir(parents=True)
    (shim / "lib" / PYTHON_VERSION).mkdir(parents=True)
    (shim / "pyvenv.cfg").write_text(
        f"home = {OPT_PYTHON}/bin\ninclude-system-site-packages = false\n"
    )
    (shim / "bin" / "python3").symlink_to(f"{OPT_PYTHON}/bin/{PYTHON_VERSION}")
    (shim / "lib" / PYTHON_VERSION / "site-packages").symlink_to(
        VENV / "lib" / PYTHON_VERSION / "site-packages"
    )
    binds += [(BASE_PYTHON, OPT_PYTHON), (shim, OPT_VENV)]
    # the interpreter's RUNPATH names its home directory; ProtectHome= hides that
    return f"{OPT_VENV}/bin/python3", [f"Environment=LD_LIBRARY_PATH={OPT_PYTHON}/lib"], binds


class Install:
    """What an installed package puts in /etc and /usr, as directories to bind into a container."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.units = tmp / "units"
        self.etc = tmp / "etc-trustplane"
        self.evidence = tmp / "evidence"
        for d in (self.units, self.etc, self.evidence):
            d.mkdir(parents=True)
        self.python, self.unit_env, self._python_binds = _python_binds(tmp)
        for kind in ("sysusers", "tmpfiles"):
            d = tmp / f"{kind}.d"
            d.mkdir()
            for package in ("trustplane-agent", "trustplane-hub"):
                shutil.copy(SYSTEMD / f"{package}.{kind}.conf", d / f"{package}.conf")
        for unit in ("trustplane-agent.service", "trustplane-hub.service"):
            shutil.copy(SYSTEMD / unit, self.units / unit)
        shutil.copy(SYSTEMD / "agent.toml", self.etc / "agent.toml")
        shutil.copy(SYSTEMD / "hub.toml", self.etc / "hub.toml")

    def unit_dropin(self, unit: str, program: str, *lines: str) -> None:
        """The test drop-in: the venv's ``program`` instead of /usr/bin's, plus ``lines``."""
        d = self.units / f"{unit}.d"
        d.mkdir()
        (d / "test.conf").write_text(
            "[Service]\nExecStart=\n"
            f"ExecStart={self.python} {VENV / 'bin' / program} run\n"
            + "".join(f"{line}\n" for line in (*self.unit_env, *_private_tmp_binds(), *lines))
        )

    def config_dropin(self, daemon: str, text: str) -> None:
        d = self.etc / f"{daemon}.d"
        d.mkdir(exist_ok=True)
        (d / "test.toml").write_text(text)

    def container(self, name: str) -> Container:
        for d in (self.tmp / "sysusers.d", self.tmp / "tmpfiles.d", self.units, self.etc):
            _publish(d)
        _publish(self.evidence)
        binds = [
            (self.units, "/etc/systemd/system"),
            (self.tmp / "sysusers.d", "/etc/sysusers.d"),
            (self.tmp / "tmpfiles.d", "/etc/tmpfiles.d"),
            (self.etc, "/etc/trustplane"),
            (self.evidence, EVIDENCE),
            *self._python_binds,
        ]
        return Container(name, binds, self.tmp / "console.log")


@contextlib.contextmanager
def booted(install: Install, name: str) -> Iterator[Container]:
    container = install.container(name)
    try:
        container.boot()
        yield container
    finally:
        container.halt()


# --- the agent ------------------------------------------------------------------------------

AGENT = "trustplane-agent.service"
CREDENTIALS = f"/run/credentials/{AGENT}"


class RecordingHub(LoopbackHub):
    """The real hub on the host's loopback; ``bodies`` are the reports it was sent, decoded."""

    def __init__(self, config: HubConfig) -> None:
        super().__init__(config)
        self.bodies: list[ReportBody] = []

    async def read_json(self, request: web.Request, limit: int) -> object:
        """hub.errors.read_json, keeping each report's body."""
        value = await read_json(request, limit)
        if request.path == "/v1/report":
            self.bodies.append(Report.from_json(value).body())
        return value

    def only_host_sequences(self) -> list[int]:
        """The sequence numbers the hub recorded for its one host, oldest first."""
        (host,) = self.call(self.state.store.list_hosts())
        return self.sequences(host.id)


@pytest.fixture
def hub(
    tmp_path: Path, swtpm_factory: SwtpmFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingHub]:
    """A hub whose EK CA bundle is the swtpm factory's CA (the agent enrolls at once)."""
    tmp = tmp_path / "hub"
    tmp.mkdir()
    bundle = ca_bundle(swtpm_factory, tmp / "ek-ca.pem")
    running = RecordingHub(make_state(tmp, enrollment={"ek_ca_bundle": str(bundle)}))
    monkeypatch.setattr(hub_attestation, "read_json", running.read_json)
    try:
        yield running
    finally:
        running.stop()


def agent_install(tmp_path: Path, tpm: Swtpm, hub: RecordingHub, *credentials: str) -> Install:
    """The agent's unit and config for ``tpm`` (holding BOOT_LOG's PCRs) and ``hub``, with the
    ``credentials`` lines in the unit drop-in."""
    extend_from_log(tpm)
    install = Install(tmp_path / "install")
    install.unit_dropin(AGENT, "trustplane-agent", *credentials, "WatchdogSec=2s", "RestartSec=1s")
    shutil.copy(BOOT_LOG, install.evidence / "binary_bios_measurements")
    (install.evidence / "product_uuid").write_text(DMI_UUID + "\n")
    shutil.copy(hub.ca_file, install.etc / "hub-ca.pem")
    install.config_dropin(
        "agent",
        f'[hub]\nurl = "{hub.url}"\nca_file = "/etc/trustplane/hub-ca.pem"\ntimeout = 5\n'
        f'[tpm]\ntcti = "{tpm.tcti}"\n'
        # a hung step is given up after 8 s (enrolling takes ~1.5 s here), then the 2 s
        # watchdog fires
        "[attestation]\nstep_timeout = 8\nbackoff_initial = 0.2\nbackoff_max = 1\n",
    )
    return install


# This machine's securityfs and DMI are not the test's: load the credentials from files (an
# empty LoadCredential= drops the shipped sources; the shipped SetCredential= stays).
EVIDENCE_FILES = (
    "LoadCredential=",
    f"LoadCredential=uefi-eventlog:{EVIDENCE}/binary_bios_measurements",
    f"LoadCredential=dmi-product-uuid:{EVIDENCE}/product_uuid",
)
NO_EVIDENCE_FILES = (
    "LoadCredential=",
    f"LoadCredential=uefi-eventlog:{EVIDENCE}/no-such-log",
    f"LoadCredential=dmi-product-uuid:{EVIDENCE}/no-such-uuid",
)


def _status_text(container: Container) -> str:
    return container.show(AGENT, "StatusText")["StatusText"]


def _attested(container: Container, report: int) -> Callable[[], bool]:
    return lambda: _status_text(container).startswith(f"attested: trusted (report {report});")


def _stop_cleanly(c: Container, unit: str = AGENT) -> None:
    """``systemctl stop`` ``unit``; it exits 0 (the agent, Type=notify, says STOPPING=1 first).

    An inactive unit is unloaded at once (``systemctl show`` then reads defaults such as
    Result=success), so this reads PID 1's own debug log of the stop instead.
    """
    c.run("systemctl", "log-level", "debug")  # PID 1 then logs every notification
    c.run("systemctl", "stop", unit)
    assert c.run("systemctl", "is-active", unit, check=False).stdout == "inactive\n"
    journal = c.journal(unit)
    stop = journal[journal.rfind(f"Stopping {unit}") :]
    exited = stop.find(f"{unit}: Main process exited, code=exited, status=0/SUCCESS (success)")
    deactivated = stop.find(f"{unit}: Deactivated successfully.")
    assert 0 < exited < deactivated, journal
    if unit == AGENT:
        notified = stop.find(f"{unit}: Got notification message from PID ")
        assert 0 < notified < stop.find("(STOPPING=1)") < exited, journal


def _sandbox(c: Container, unit: str, user: str) -> dict[str, str]:
    """Check ``unit``'s main process runs as ``user`` with no capabilities, no new privileges
    and a seccomp filter; returns its /proc status fields."""
    pid = c.show(unit, "MainPID")["MainPID"]
    status = c.run("cat", f"/proc/{pid}/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines())
    uid, gid = (c.run("id", flag, user).stdout.strip() for flag in ("-u", "-g"))
    assert (fields["Uid"].split(), fields["Gid"].split()) == ([uid] * 4, [gid] * 4)
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0" * 16
    assert (fields["NoNewPrivs"], fields["Seccomp"]) == ("1", "2")
    return fields


def test_agent_unit_reaches_ready_attests_and_stops_cleanly(
    tmp_path: Path, swtpm: Swtpm, hub: RecordingHub
) -> None:
    install = agent_install(tmp_path, swtpm, hub, *EVIDENCE_FILES)
    with booted(install, "tp-agent-stop") as c:
        c.run("systemctl", "start", AGENT)  # Type=notify: returns once READY=1 arrived
        assert c.run("systemctl", "is-active", AGENT).stdout == "active\n"
        c.wait_for(_attested(c, 1), 30, "the first verdict")
        assert c.show(AGENT, "NRestarts")["NRestarts"] == "0"
        fields = _sandbox(c, AGENT, "trustplane")
        groups = (c.run("getent", "group", g).stdout.split(":")[2] for g in ("trustplane", "tss"))
        assert sorted(fields["Groups"].split()) == sorted(groups)

        (host,) = hub.call(hub.state.store.list_hosts())
        assert (host.state, host.verdict, host.dmi_uuid) == (
            "enrolled",
            "trusted",
            DMI_UUID.lower(),
        )
        assert hub.only_host_sequences() == [1]
        # the log came through LoadCredential= and agent.toml's credential path
        (body,) = hub.bodies
        assert body.eventlogs["uefi"].data == BOOT_LOG.read_bytes()
        # /dev/mem: none in the container (and DevicePolicy=closed would refuse it)
        assert body.missing_evidence == (
            MissingEvidence("txt", "not_present: /dev/mem does not exist"),
        )

        _stop_cleanly(c)
        status = json.loads(c.run("cat", "/var/lib/trustplane/status.json").stdout)
        assert (status["phase"], status["last_acked_sequence"]) == ("stopped", 1)


def test_agent_unit_without_evidence_sources_starts_and_reports_them_missing(
    tmp_path: Path, swtpm: Swtpm, hub: RecordingHub
) -> None:
    """A host without a UEFI log or DMI UUID: the shipped SetCredential= placeholders (one
    newline) let the unit start, and the agent reports both as not present."""
    install = agent_install(tmp_path, swtpm, hub, *NO_EVIDENCE_FILES)
    with booted(install, "tp-agent-noevidence") as c:
        c.run("systemctl", "start", AGENT)
        c.wait_for(_attested(c, 1), 30, "the first verdict")
        for name in ("uefi-eventlog", "dmi-product-uuid"):
            assert c.run("cat", f"{CREDENTIALS}/{name}").stdout == "\n"
        (body,) = hub.bodies
        assert body.eventlogs == {}
        assert "dmi_uuid" not in body.facts
        assert body.missing_evidence == (
            MissingEvidence("dmi_uuid", f"not_present: {CREDENTIALS}/dmi-product-uuid is empty"),
            MissingEvidence("uefi", f"not_present: {CREDENTIALS}/uefi-eventlog is empty"),
            MissingEvidence("txt", "not_present: /dev/mem does not exist"),
        )
        _stop_cleanly(c)


def test_stalled_agent_is_killed_by_the_watchdog_and_restarted(
    tmp_path: Path, swtpm: Swtpm, hub: RecordingHub
) -> None:
    assert swtpm.process is not None
    install = agent_install(tmp_path, swtpm, hub, *EVIDENCE_FILES)
    with booted(install, "tp-agent-watchdog") as c:
        c.run("systemctl", "start", AGENT)
        c.wait_for(_attested(c, 1), 30, "the first verdict")
        assert c.show(AGENT, "NRestarts")["NRestarts"] == "0"

        seen: set[tuple[str, str]] = set()

        def restarted() -> bool:
            show = c.show(AGENT, "SubState", "Result", "NRestarts")
            seen.add((show["SubState"], show["Result"]))
            return show["NRestarts"] == "1"

        os.kill(swtpm.process.pid, signal.SIGSTOP)  # the next TPM command never answers
        try:
            c.run("systemctl", "kill", "--signal=SIGUSR1", "--kill-who=main", AGENT)
            c.wait_for(restarted, 30, "the watchdog to restart the agent")
        finally:
            os.kill(swtpm.process.pid, signal.SIGCONT)
        assert ("auto-restart", "watchdog") in seen, seen
        journal = c.journal(AGENT)
        assert "Watchdog timeout (limit 2s)!" in journal, journal
        assert "Failed with result 'watchdog'." in journal, journal

        c.wait_for(lambda: c.show(AGENT, "ActiveState")["ActiveState"] == "active", 30, "READY")
        # the killed run owed report 2 (persisted when it was due); the new run sends it and
        # its own start report 3
        c.wait_for(_attested(c, 3), 30, "a verdict after the restart")
        assert hub.only_host_sequences() == [1, 2, 3]
        _stop_cleanly(c)


# --- the hub --------------------------------------------------------------------------------

HUB = "trustplane-hub.service"


def _health(port: int, ca: Path) -> tuple[int, object] | None:
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    except OSError:
        return None
    finally:
        conn.close()


def test_hub_unit_starts_answers_health_and_stops(tmp_path: Path) -> None:
    install = Install(tmp_path / "install")
    install.unit_dropin(HUB, "trustplane-hub")
    port = free_port()
    install.config_dropin("hub", f'[server]\nlisten = "127.0.0.1:{port}"\n')
    with booted(install, "tp-hub") as c:
        c.run(  # as the README says: the hub's keys made by its own user
            "setpriv",
            "--reuid=trustplane-hub",
            "--regid=trustplane-hub",
            "--clear-groups",
            "env",
            *(f"{line.removeprefix('Environment=')}" for line in install.unit_env),
            install.python,
            str(VENV / "bin" / "trustplane-hub"),
            "init",
        )
        c.run("systemctl", "start", HUB)
        ca = tmp_path / "hub-ca.pem"
        ca.write_text(c.run("cat", "/var/lib/trustplane-hub/ca.pem").stdout)
        answers: list[tuple[int, object] | None] = []

        def healthy() -> bool:
            answers.append(_health(port, ca))
            return answers[-1] is not None

        c.wait_for(healthy, 30, "the hub's /health")
        assert answers[-1] == (200, {"status": "ok"})
        assert c.run("systemctl", "is-active", HUB).stdout == "active\n"
        fields = _sandbox(c, HUB, "trustplane-hub")
        gid = c.run("id", "-g", "trustplane-hub").stdout.strip()
        assert fields["Groups"].split() == [gid]
        _stop_cleanly(c, HUB)
