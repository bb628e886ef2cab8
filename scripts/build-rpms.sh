#!/usr/bin/env bash
# Build trustplane's source RPM and its noarch RPMs (python3-trustplane, trustplane-agent,
# trustplane-hub) from this git tree.
#
#   scripts/build-rpms.sh [TOPDIR [RPMBUILD-OPTION...]]
#
# TOPDIR defaults to build/rpmbuild (RPMS/ and SRPMS/ end up in it); further options go to
# rpmbuild, e.g. --define 'dist .fc41'.
#
# Source0 is `git archive` of the tracked files as they are in the work tree, committed or not
# (untracked files are left out, so the tarball holds what git would commit). The tree object is
# written through a private index: the real index, HEAD and every ref stay as they are.
# The version is setup.cfg's. On hosts without Fedora's rpm macros (Debian: apt-get install rpm
# python3-packaging python3-installer python3-pip python3-setuptools python3-wheel) the spec
# loads rpm/macros.trustplane-compat itself.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
topdir=$(realpath -m "${1:-$repo/build/rpmbuild}")
shift $(($# > 0 ? 1 : 0))
name=trustplane
version=$(sed -n 's/^version *= *//p' "$repo/setup.cfg")
if [ -z "$version" ]; then
    echo "build-rpms: no version in $repo/setup.cfg" >&2
    exit 2
fi

mkdir -p "$topdir"/{SOURCES,SPECS,BUILD,BUILDROOT,RPMS,SRPMS}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

export GIT_INDEX_FILE="$scratch/index"
git -C "$repo" read-tree HEAD
git -C "$repo" add --update
tree=$(git -C "$repo" write-tree)
unset GIT_INDEX_FILE
git -C "$repo" archive --format=tar.gz --prefix="$name-$version/" \
    -o "$topdir/SOURCES/$name-$version.tar.gz" "$tree"

cp "$repo/rpm/macros.trustplane-compat" "$repo/rpm/trustplane-rpm-compat.py" \
    "$repo/systemd/trustplane-agent.sysusers.conf" "$repo/systemd/trustplane-hub.sysusers.conf" \
    "$topdir/SOURCES/"
# The spec goes beside its sources too, where rpmlint (which takes the spec's directory as
# %_sourcedir) finds them.
cp "$repo/rpm/trustplane.spec" "$topdir/SPECS/"
cp "$repo/rpm/trustplane.spec" "$topdir/SOURCES/"

rpmbuild -ba --define "_topdir $topdir" --define "tp_version $version" "$@" \
    "$topdir/SPECS/trustplane.spec"
