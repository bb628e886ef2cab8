#!/usr/bin/python3
"""Stand-ins for Fedora's pyproject and sysusers macros on build hosts that lack them.

macros.trustplane-compat calls this script; trustplane.spec never calls it directly, and on
Fedora or RHEL it is not used at all (the real macros from pyproject-rpm-macros and
systemd-rpm-macros apply). Each subcommand does one macro's job:

- ``install WHEEL``: %pyproject_install, with the python3-installer library and a fixed
  Fedora-style scheme (Debian's own Python would choose /usr/local/lib/python3/dist-packages).
- ``save-files MODULE...``: %pyproject_save_files, a file list naming each module's directory
  and the dist-info directory, plus the module list for ``check-import``.
- ``check-import``: %pyproject_check_import -t, importing each top-level module from the
  buildroot.
- ``sysusers-pre FILE``: %sysusers_create_compat, shell for %pre that creates the users and
  groups a sysusers.d file declares with getent/groupadd/useradd/usermod (shadow-utils), as
  Fedora's macro does. Only the line types trustplane uses (u, g, m) are accepted.

It leaves byte-compilation out: the build host's Python is not the target's.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path


class CompatError(Exception):
    """The input cannot be turned into what the macro promises."""


def install_wheel(wheel: Path, destdir: Path, sitelib: str, bindir: str, interpreter: str) -> None:
    """Install ``wheel`` under ``destdir`` into ``sitelib`` with its scripts in ``bindir``."""
    # Only this subcommand needs python3-installer (a Debian package, not in the venv).
    from installer import install  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    from installer.destinations import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        SchemeDictionaryDestination,
    )
    from installer.sources import WheelFile  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    scheme = {
        "purelib": sitelib,
        "platlib": sitelib,
        "headers": "/usr/include/python3",
        "scripts": bindir,
        "data": "/usr",
    }
    destination = SchemeDictionaryDestination(
        scheme, interpreter=interpreter, script_kind="posix", destdir=str(destdir)
    )
    with WheelFile.open(wheel) as source:
        install(source, destination, additional_metadata={"INSTALLER": b"rpm\n"})


def save_files(buildroot: Path, sitelib: str, modules: list[str]) -> tuple[list[str], list[str]]:
    """Return the %files lines for ``modules`` and their dist-info, and the module names.

    Raises CompatError when a module or the dist-info directory is not in the buildroot.
    """
    root = buildroot / sitelib.lstrip("/")
    lines = []
    for module in modules:
        if (root / module).is_dir():
            lines.append(f"{sitelib}/{module}/")
        elif (root / f"{module}.py").is_file():
            lines.append(f"{sitelib}/{module}.py")
        else:
            raise CompatError(f"module {module!r} is not installed in {root}")
    dist_infos = sorted(p.name for p in root.glob("*.dist-info"))
    if len(dist_infos) != 1:
        raise CompatError(f"expected one .dist-info directory in {root}, found {dist_infos}")
    lines.append(f"{sitelib}/{dist_infos[0]}/")
    return lines, modules


def check_import(modules: list[str]) -> None:
    """Import each module (sys.path must already lead to the buildroot)."""
    for module in modules:
        importlib.import_module(module)


def sysusers_pre(text: str) -> str:
    """Return idempotent %pre shell for the u, g and m lines of a sysusers.d file.

    Raises CompatError on another line type or a malformed line.
    """
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = shlex.split(line)
        kind = fields[0]
        q = shlex.quote
        if kind == "u" and len(fields) >= 3:
            name, ident = fields[1], fields[2]
            gecos = fields[3] if len(fields) > 3 and fields[3] != "-" else ""
            home = fields[4] if len(fields) > 4 and fields[4] != "-" else "/"
            shell = fields[5] if len(fields) > 5 and fields[5] != "-" else "/usr/sbin/nologin"
            uid = "" if ident == "-" else f" -u {q(ident)}"
            gid = "" if ident == "-" else f" -g {q(ident)}"
            out.append(f"getent group {q(name)} >/dev/null || groupadd -r{gid} {q(name)} || :")
            out.append(
                f"getent passwd {q(name)} >/dev/null || useradd -r{uid} -g {q(name)}"
                f" -d {q(home)} -s {q(shell)} -c {q(gecos)} {q(name)} || :"
            )
        elif kind == "g" and len(fields) >= 2:
            name = fields[1]
            ident = fields[2] if len(fields) > 2 else "-"
            gid = "" if ident == "-" else f" -g {q(ident)}"
            out.append(f"getent group {q(name)} >/dev/null || groupadd -r{gid} {q(name)} || :")
        elif kind == "m" and len(fields) == 3:
            user, group = fields[1], fields[2]
            out.append(f"getent group {q(group)} >/dev/null || groupadd -r {q(group)} || :")
            out.append(f"usermod -a -G {q(group)} {q(user)} || :")
        else:
            raise CompatError(f"line {number}: unsupported sysusers.d line {line!r}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trustplane-rpm-compat")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install")
    p.add_argument("--destdir", type=Path, required=True)
    p.add_argument("--sitelib", required=True)
    p.add_argument("--bindir", required=True)
    p.add_argument("--interpreter", required=True)
    p.add_argument("wheels", type=Path, nargs="+")
    p = sub.add_parser("save-files")
    p.add_argument("--buildroot", type=Path, required=True)
    p.add_argument("--sitelib", required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--modules-output", type=Path, required=True)
    p.add_argument("modules", nargs="+")
    p = sub.add_parser("check-import")
    p.add_argument("--modules", type=Path, required=True)
    p = sub.add_parser("sysusers-pre")
    p.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            for wheel in args.wheels:
                install_wheel(wheel, args.destdir, args.sitelib, args.bindir, args.interpreter)
        elif args.command == "save-files":
            lines, modules = save_files(args.buildroot, args.sitelib, args.modules)
            args.output.write_text("".join(f"{line}\n" for line in lines))
            args.modules_output.write_text("".join(f"{m}\n" for m in modules))
        elif args.command == "check-import":
            check_import(args.modules.read_text().split())
        else:
            print("\n".join(sysusers_pre(f.read_text()) for f in args.files))
    except (CompatError, OSError) as exc:
        print(f"trustplane-rpm-compat: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
