"""The operator documentation against the code: every config key each loader accepts is
documented (and every documented key exists), and every CLI command and option of
``trustplane-hub`` and ``trustplane-agent`` (walked from their argparse parsers) and their exit
codes appear in the README's command reference."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from hub import cli as hub_cli
from hub.config import config_keys
from nodeagent import cli as agent_cli
from nodeagent import config as agent_config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
HUB_DOC = (REPO / "docs" / "hub-config.md").read_text()
AGENT_DOC = (REPO / "docs" / "agent-config.md").read_text()


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line) up to the next ``## `` heading."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_keys(text: str) -> set[str]:
    """The first column of markdown table rows that name a key in backticks."""
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, flags=re.MULTILINE))


def test_every_hub_config_key_is_documented_and_every_documented_key_exists() -> None:
    accepted = set(config_keys())
    assert "server.max_body_bytes" in accepted  # the walk found the loader's keys
    documented = table_keys(HUB_DOC)
    assert accepted - documented == set(), "keys missing from docs/hub-config.md"
    assert documented - accepted == set(), "docs/hub-config.md names keys the hub refuses"


def agent_sections() -> dict[str, str]:
    """``""`` (top level) and each table name -> its section of docs/agent-config.md."""
    out = {"": section(AGENT_DOC, "## Top level")}
    for table in agent_config._TABLES:
        out[table] = section(AGENT_DOC, f"## `[{table}]`")
    return out


def test_every_agent_config_key_is_documented_in_its_table() -> None:
    accepted = {"": set(agent_config._TOP)} | {
        table: set(checks) for table, (_, checks) in agent_config._TABLES.items()
    }
    assert set(accepted) == {"", "hub", "tpm", "evidence", "attestation", "metrics", "keys"}
    for table, text in agent_sections().items():
        documented = table_keys(text)
        assert accepted[table] - documented == set(), f"[{table}] keys missing from the doc"
        assert documented - accepted[table] == set(), f"[{table}] documents unknown keys"


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> list[tuple[tuple[str, ...], list[str]]]:
    """Every leaf command under ``parser`` with its long options (help excluded)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        options = [
            o
            for a in parser._actions
            if not isinstance(a, argparse._HelpAction)
            for o in a.option_strings
            if o.startswith("--")
        ]
        return [(path, options)]
    return [
        found
        for action in subs
        for name, child in action.choices.items()
        for found in commands(child, (*path, name))
    ]


HUB_COMMANDS = commands(hub_cli._parser(), ("trustplane-hub",))
AGENT_COMMANDS = commands(agent_cli._parser(), ("trustplane-agent",))
REFERENCE = section(README, "## Command reference")


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in HUB_COMMANDS + AGENT_COMMANDS}
    assert {
        "trustplane-hub init",
        "trustplane-hub hosts group",
        "trustplane-hub flavor assign",
        "trustplane-hub audit verify",
        "trustplane-agent tpm info",
        "trustplane-agent evidence",
    } <= names
    assert len(HUB_COMMANDS) == 28
    assert len(AGENT_COMMANDS) == 6


@pytest.mark.parametrize(("path", "options"), HUB_COMMANDS + AGENT_COMMANDS, ids=" ".join)
def test_every_command_and_option_is_in_the_readme(
    path: tuple[str, ...], options: list[str]
) -> None:
    command = " ".join(path)
    rows = [
        line for line in REFERENCE.splitlines() if re.match(rf"\| `{re.escape(command)}[ `]", line)
    ]
    assert rows, f"{command} has no row in the README's command reference"
    common = {"--config", "--state-dir"}  # described once, above the tables
    for option in options:
        if option in common:
            assert f"`{option}" in REFERENCE
        else:
            assert any(option in row for row in rows), f"{command} {option} is not described"


def test_top_level_options_are_described() -> None:
    for option in ("--version", "--help", "--config", "--state-dir"):
        assert f"`{option}" in REFERENCE, option


def exit_rows(text: str, title: str) -> set[int]:
    table = text[text.index(f"| `{title}` exit code | meaning |") :].split("\n\n", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}


def test_exit_codes_of_both_commands_are_documented() -> None:
    hub_codes = {hub_cli.EXIT_OK, hub_cli.EXIT_RUNTIME, hub_cli.EXIT_USAGE}
    assert exit_rows(REFERENCE, "trustplane-hub") == hub_codes == {0, 1, 2}
    agent_codes = {
        value
        for name, value in vars(agent_cli).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    } | {2}  # argparse's usage error
    assert exit_rows(REFERENCE, "trustplane-agent") == agent_codes
    assert agent_codes == {0, 1, 2, 3, 4, 5, 6, 130}


def test_readme_keeps_its_first_commands_and_links_the_config_docs() -> None:
    assert README.startswith(
        "# trustplane\n\n```\nmake demo     # set up what is missing (apt packages, .venv) and "
        "run the local demo\nmake test     # set up what is missing and run the whole test suite"
    )
    keys = section(README, "## Configuration keys")
    assert "(docs/hub-config.md)" in keys
    assert "(docs/agent-config.md)" in keys
    for needle in (
        "dnf upgrade trustplane-agent",
        "dnf remove trustplane-agent trustplane-hub python3-trustplane",
        "journalctl -u trustplane-hub",
        ".rpmnew",
        ".rpmsave",
        "userdel trustplane",
    ):
        assert needle in README, needle
