#!/usr/bin/env bash
# Build CPython 3.13 once, from Debian's source package, into a cache folder that later
# runs (and fresh clones) reuse:
#     ${ORM_VIEWS_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/django-orm-views}/python3.13
# Django 6.x needs Python 3.12+, and some machines have none. Idempotent: when the
# interpreter is there and works, it is only printed. The last line of stdout is the
# interpreter's path; progress goes to stderr.
#
# The source comes from Debian's `trixie` suite through a private apt configuration
# (its own sources list and lists folder), so the system's apt setup is left as it was.
# Needs root (or sudo-free apt) only to install missing build dependencies.
set -euo pipefail

CACHE=${ORM_VIEWS_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/django-orm-views}
PREFIX=$CACHE/python3.13
PYTHON=$PREFIX/bin/python3.13
MIRROR=${ORM_VIEWS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD_PACKAGES=(build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev
    liblzma-dev libreadline-dev libsqlite3-dev libncurses-dev uuid-dev libgdbm-dev xz-utils)

say() { printf '[python3.13] %s\n' "$*" >&2; }

works() {
    "$PYTHON" -c 'import sys, ssl, venv, ensurepip, sqlite3, zlib, ctypes; assert sys.version_info[:2] == (3, 13)' 2>/dev/null
}

if [ -x "$PYTHON" ] && works; then
    say "using the cached build in $PREFIX"
    echo "$PYTHON"
    exit 0
fi

started=$SECONDS
mkdir -p "$CACHE"
exec 9>"$CACHE/.python3.13.lock"
flock 9  # two runs at once: the second waits, then finds the first one's build
if [ -x "$PYTHON" ] && works; then
    say "built meanwhile by another run: $PREFIX"
    echo "$PYTHON"
    exit 0
fi

missing=()
for package in "${BUILD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing build dependencies: ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/python313-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/src"
echo "deb-src $MIRROR trixie main" >"$work/sources.list"
apt_options=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/lists"
    -o "APT::Get::List-Cleanup=0"
    # The private folders belong to whoever runs this, not to apt's _apt user.
    -o "APT::Sandbox::User=$(id -un)"
)
say "fetching the source list of Debian trixie"
apt-get "${apt_options[@]}" update -qq >&2
say "downloading the python3.13 source package"
(cd "$work/src" && apt-get "${apt_options[@]}" source --download-only python3.13 >&2)
tarball=$(find "$work/src" -maxdepth 1 -name 'python3.13_*.orig.tar.*' ! -name '*.asc' | head -n 1)
[ -n "$tarball" ] || { say "no upstream tarball in the source package" ; exit 1; }
say "unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$work/src"
source_dir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)
[ -n "$source_dir" ] || { say "no Python-3.13* folder in $(basename "$tarball")"; exit 1; }

jobs=$(nproc 2>/dev/null || echo 2)
say "configuring (prefix $PREFIX)"
(cd "$source_dir" && ./configure --prefix="$PREFIX" --with-ensurepip=install >"$work/configure.log" 2>&1) \
    || { tail -n 40 "$work/configure.log" >&2; exit 1; }
say "compiling with $jobs jobs (about 5 minutes on 2 cores)"
(cd "$source_dir" && make -j"$jobs" >"$work/make.log" 2>&1) \
    || { tail -n 40 "$work/make.log" >&2; exit 1; }
say "installing into $PREFIX"
(cd "$source_dir" && make altinstall >"$work/install.log" 2>&1) \
    || { tail -n 40 "$work/install.log" >&2; exit 1; }

works || { say "the new interpreter lacks a module the tests need (ssl, venv, sqlite3, ...)"; exit 1; }
say "built $("$PYTHON" --version) in $((SECONDS - started))s"
echo "$PYTHON"
