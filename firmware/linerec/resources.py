"""Files shipped inside the package (notice, speech clips, pin map, example calls)."""

from __future__ import annotations

from pathlib import Path

# The package is installed as files (never zipped), so its data is beside this module; not
# importlib.resources, which would load tempfile, shutil and the compressors into every process.
_DATA = Path(__file__).resolve().parent / "data"


def data_path(name: str) -> Path:
    return _DATA / name
