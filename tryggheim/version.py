"""The installed Tryggheim's version: what ``tryggheim --version``, the ``/metrics`` build info
and the support desk all name. Read from the package's metadata (pyproject.toml's ``version``,
set by the release step), so there is one place to change it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "tryggheim"

#: What a source tree that was never installed reports (no metadata to read).
UNKNOWN = "0+unknown"


def installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN
