"""Files shipped inside the package (notice, speech clips, pin map, example calls)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    return Path(str(resources.files("linerec") / "data" / name))
