#!/usr/bin/env python3
"""Software bill of materials of a built root filesystem, as CycloneDX 1.5 JSON.

    python3 image/sbom.py ROOTFS --name linerec-0.1.0-arm64 --version 0.1.0 > IMAGE.cdx.json

One component per Debian package dpkg lists as installed (`var/lib/dpkg/status`, with a
`pkg:deb/debian/...` package URL) and one per Python distribution installed in linerec's venv
(`opt/linerec/lib/python3*/site-packages/*.dist-info`, `pkg:pypi/...`), linerec itself
included. Only the standard library: it runs on the build host. `image/build` writes it beside
the image. Package URLs: https://github.com/package-url/purl-spec; CycloneDX:
https://cyclonedx.org/docs/1.5/json/.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

VENV = "opt/linerec"


def debian_packages(root: Path) -> list[dict[str, str]]:
    """Installed packages from dpkg's status file: name, version, architecture."""
    status = root / "var/lib/dpkg/status"
    found = []
    for paragraph in status.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line (a description's)
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            found.append(
                {
                    "name": fields["Package"],
                    "version": fields.get("Version", ""),
                    "arch": fields.get("Architecture", ""),
                }
            )
    return sorted(found, key=lambda p: p["name"])


def python_packages(root: Path) -> list[dict[str, str]]:
    """Distributions installed in linerec's venv: name and version from their METADATA."""
    found = {}
    for metadata in sorted((root / VENV).glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        message = email.parser.Parser().parsestr(metadata.read_text(encoding="utf-8"), True)
        name, version = message.get("Name"), message.get("Version")
        if name and version:
            found[_normalise(name)] = {"name": name, "version": version}
    return [found[key] for key in sorted(found)]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, as pkg:pypi wants it


def bom(root: Path, name: str, version: str, now: datetime | None = None) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    for package in debian_packages(root):
        purl = f"pkg:deb/debian/{quote(package['name'])}@{quote(package['version'], safe='')}"
        if package["arch"]:
            purl += f"?arch={package['arch']}"
        components.append(
            {
                "type": "library",
                "bom-ref": purl,
                "name": package["name"],
                "version": package["version"],
                "purl": purl,
            }
        )
    for package in python_packages(root):
        purl = f"pkg:pypi/{_normalise(package['name'])}@{quote(package['version'], safe='')}"
        kind = "application" if _normalise(package["name"]) == "linerec" else "library"
        components.append(
            {
                "type": kind,
                "bom-ref": purl,
                "name": package["name"],
                "version": package["version"],
                "purl": purl,
            }
        )
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
            "component": {"type": "firmware", "name": name, "version": version},
        },
        "components": components,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the image's root filesystem tree")
    parser.add_argument("--name", required=True, help="the image's name")
    parser.add_argument("--version", required=True, help="the image's version")
    args = parser.parse_args(argv)
    status = args.root / "var/lib/dpkg/status"
    if not status.is_file():
        print(f"sbom: {status}: no dpkg status file: not a Debian root", file=sys.stderr)
        return 2
    json.dump(bom(args.root, args.name, args.version), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
