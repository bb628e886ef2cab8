"""The manual pages (man/) against their sources: the argparse parsers, the README's exit-code
tables and docs/*-config.md; each page renders under groff without a warning."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hub import cli as hub_cli
from nodeagent import cli as agent_cli
from tests.test_docs import AGENT_COMMANDS, HUB_COMMANDS, table_keys
from trustplane import manpages

REPO = Path(__file__).resolve().parents[1]
MAN = REPO / "man"
NAMES = [
    "trustplane.1",
    "trustplane-agent.8",
    "trustplane-hub.8",
    "trustplane-agent.toml.5",
    "trustplane-hub.toml.5",
]


def test_the_committed_pages_are_what_the_generator_writes() -> None:
    assert sorted(p.name for p in MAN.iterdir()) == sorted(NAMES)
    assert manpages.main(["--check"]) == 0, "run: python -m trustplane.manpages"


def test_a_changed_help_text_makes_the_check_fail(tmp_path: Path) -> None:
    manpages.main(["--out", str(tmp_path)])
    page = tmp_path / "trustplane-hub.8"
    page.write_text(page.read_text().replace("Serve the hub", "Serve the HUB"))
    assert manpages.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_groff_renders_each_page_without_a_warning(name: str) -> None:
    groff = shutil.which("groff")
    assert groff, "groff is missing (apt-get install groff-base)"
    proc = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(MAN / name)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    assert (proc.returncode, proc.stderr) == (0, "")


def text_of(name: str) -> str:
    """What man shows (formatting removed), so tests read words, not roff."""
    proc = subprocess.run(
        ["groff", "-man", "-Tascii", "-P", "-cbou", str(MAN / name)],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin", "MANWIDTH": "1000"},
    )
    return re.sub(r"\s+", " ", proc.stdout)


@pytest.mark.parametrize(
    ("page", "commands"),
    [("trustplane-hub.8", HUB_COMMANDS), ("trustplane-agent.8", AGENT_COMMANDS)],
)
def test_every_command_and_option_is_in_its_page(
    page: str, commands: list[tuple[tuple[str, ...], list[str]]]
) -> None:
    text = text_of(page)
    for path, options in commands:
        command = " ".join(path)
        assert command in text, command
        section = text[text.index(command) :]
        for option in options:
            assert option in section, f"{command} {option}"


def test_exit_codes_are_in_the_pages() -> None:
    hub = text_of("trustplane-hub.8")
    tail = hub[hub.index("EXIT STATUS") :]
    for code in (hub_cli.EXIT_OK, hub_cli.EXIT_RUNTIME, hub_cli.EXIT_USAGE):
        assert f" {code} " in tail
    agent = text_of("trustplane-agent.8")
    tail = agent[agent.index("EXIT STATUS") :]
    for code in (agent_cli.EXIT_CONFIG, agent_cli.EXIT_HUB, agent_cli.EXIT_TPM, 130):
        assert f" {code} " in tail


@pytest.mark.parametrize(
    ("page", "doc"),
    [("trustplane-hub.toml.5", "hub-config.md"), ("trustplane-agent.toml.5", "agent-config.md")],
)
def test_every_documented_config_key_is_in_its_page(page: str, doc: str) -> None:
    keys = table_keys((REPO / "docs" / doc).read_text())
    assert len(keys) > 10
    text = text_of(page)
    missing = {k for k in keys if k not in text}
    assert missing == set()
