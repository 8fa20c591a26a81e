#!/usr/bin/env bash
# Build the release artefacts of one tag: the wheel (dist/) and, where a Docker engine is at hand,
# the image tryggheim:<version> labelled with that version. Run it on a clean checkout of the tag:
#
#   git tag -s v0.2.0 -m "Tryggheim 0.2.0" && git checkout v0.2.0
#   scripts/release.sh v0.2.0            # wheel and image
#   scripts/release.sh v0.2.0 --no-image # wheel only (a machine without Docker)
#
# PYTHON (default python3) builds the wheel, into DIST (default dist/).
# The tag must name pyproject.toml's version (bump it, and move CHANGELOG.md's "Unreleased"
# section under the new version, in the commit the tag points to). See CONTRIBUTING.md, "Releases".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: scripts/release.sh vX.Y.Z [--no-image]" >&2
    exit 2
}

(($# >= 1)) || usage
tag=$1
image=yes
if (($# == 2)); then
    [[ $2 == --no-image ]] || usage
    image=no
fi
(($# <= 2)) || usage
[[ $tag =~ ^v([0-9]+\.[0-9]+\.[0-9]+([a-z0-9.+-]*)?)$ ]] || {
    echo "release: the tag must look like v1.2.3, got '$tag'" >&2
    exit 2
}
version=${BASH_REMATCH[1]}
python=${PYTHON:-python3}
declared=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
if [[ $declared != "$version" ]]; then
    echo "release: tag $tag but pyproject.toml says version $declared; bump one of them" >&2
    exit 2
fi
grep -q "^## \[$version\]" CHANGELOG.md || {
    echo "release: CHANGELOG.md has no section '## [$version]'" >&2
    exit 2
}

dist=${DIST:-dist}
mkdir -p "$dist"
rm -f "$dist/tryggheim-$version-"*.whl
# setuptools reuses build/: a module deleted since an earlier build would still be packed.
rm -rf build
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$dist" .
rm -rf build
wheel=$(ls "$dist/tryggheim-$version-"*.whl)
echo "release: built $wheel"

if [[ $image == yes ]]; then
    docker build --build-arg "VERSION=$version" -t "tryggheim:$version" .
    echo "release: built image tryggheim:$version"
fi
