"""The image's software bill of materials (issue 17, item 8): image/sbom.py on a root tree,
with the host's own dpkg status file as a real input and a venv as image/build makes it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SBOM = Path(__file__).parents[1] / "image" / "sbom.py"
STATUS = """Package: libc6
Status: install ok installed
Architecture: arm64
Version: 2.36-9+deb12u9
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system. Version: 9.9 (a continuation line, not a field)

Package: removed-thing
Status: deinstall ok config-files
Architecture: arm64
Version: 1.0

Package: python3-numpy
Status: install ok installed
Architecture: arm64
Version: 1:1.24.2-1+deb12u1
"""


def dist_info(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nText\n"
    )


def sbom(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SBOM),
            str(root),
            "--name",
            "linerec-0.1.0-arm64",
            "--version",
            "0.1.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debian_and_python_packages_are_listed_with_package_urls(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    site = tmp_path / "opt/linerec/lib/python3.11/site-packages"
    dist_info(site, "paho-mqtt", "2.1.0")
    dist_info(site, "linerec", "0.1.0")
    dist_info(site, "cryptography", "50.0.2")
    result = sbom(tmp_path)
    assert result.returncode == 0, result.stderr
    bom = json.loads(result.stdout)
    assert (bom["bomFormat"], bom["specVersion"], bom["version"]) == ("CycloneDX", "1.5", 1)
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["component"] == {
        "type": "firmware",
        "name": "linerec-0.1.0-arm64",
        "version": "0.1.0",
    }
    assert [c["purl"] for c in bom["components"]] == [
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=arm64",
        "pkg:deb/debian/python3-numpy@1%3A1.24.2-1%2Bdeb12u1?arch=arm64",
        "pkg:pypi/cryptography@50.0.2",
        "pkg:pypi/linerec@0.1.0",
        "pkg:pypi/paho-mqtt@2.1.0",
    ]
    assert [c["type"] for c in bom["components"]].count("application") == 1  # linerec
    assert len({c["bom-ref"] for c in bom["components"]}) == len(bom["components"])


def test_the_hosts_own_dpkg_database_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    shutil.copy("/var/lib/dpkg/status", tmp_path / "var/lib/dpkg/status")
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    names = sorted({line.split()[1] for line in installed if line.startswith("installed ")})
    bom = json.loads(sbom(tmp_path).stdout)
    assert sorted({c["name"] for c in bom["components"]}) == names
    assert all(c["version"] for c in bom["components"])


def test_a_tree_that_is_not_a_debian_root_is_refused_in_one_line(tmp_path: Path) -> None:
    result = sbom(tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"sbom: {tmp_path / 'var/lib/dpkg/status'}: no dpkg status file: not a Debian root"
    )
