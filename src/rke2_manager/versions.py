"""RKE2 release versions (``v1.32.1+rke2r1``): parsing and ordering, nothing else.

A release is Kubernetes ``major.minor.patch`` plus RKE2's own revision (``rke2rN``), which
orders releases of one Kubernetes patch. Release candidates (``-rc1``) are not accepted: the
manager upgrades between releases only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERSION_PATTERN = r"^v\d{1,4}\.\d{1,4}\.\d{1,4}\+rke2r\d{1,4}$"
"""The form the API accepts (and the OpenAPI document shows)."""
_VERSION = re.compile(r"v(\d{1,4})\.(\d{1,4})\.(\d{1,4})\+rke2r(\d{1,4})")


@dataclass(frozen=True, order=True)
class Version:
    """A parsed release; compares by (major, minor, patch, revision)."""

    major: int
    minor: int
    patch: int
    revision: int
    text: str = field(compare=False)

    def __str__(self) -> str:
        return self.text

    @property
    def minor_line(self) -> str:
        """``v1.32``: the release line, as operators name it."""
        return f"v{self.major}.{self.minor}"


def parse_version(text: str) -> Version:
    """``text`` as a :class:`Version`; ValueError if it is not of the form ``v1.32.1+rke2r1``."""
    found = _VERSION.fullmatch(text)
    if found is None:
        shown = text if len(text) <= 64 else text[:61] + "..."
        raise ValueError(f"'{shown}' is not an RKE2 release version like v1.32.1+rke2r1")
    major, minor, patch, revision = (int(g) for g in found.groups())
    return Version(major, minor, patch, revision, text)


def try_version(text: str | None) -> Version | None:
    """The parsed version, or None for a missing or malformed one (an unknown version)."""
    if text is None:
        return None
    try:
        return parse_version(text)
    except ValueError:
        return None


def minor_steps(current: Version, target: Version) -> int | None:
    """How many minor versions ``target`` is above ``current`` (0: same line, negative: below);
    None across major versions, where minor numbers do not count up from each other."""
    if current.major != target.major:
        return None
    return target.minor - current.minor
