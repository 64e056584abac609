"""What a power cut (or SIGKILL) mid-write leaves on the appliance's card: the temporary file
of an `atomic_file` replacement. The next start removes each one, names it in the log, and
takes none of them for a real file (a discard marker above all: its name is no recording)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from calls import wait_until
from killed import killed_mid_write
from linerec.atomic import atomic_file, remove_temps, temp_target
from linerec.config import load_config
from linerec.daemon.callnotes import NOTES
from linerec.daemon.storage import open_store
from linerec.store.keys import (
    EPOCH_FILE,
    RENEWED_CERT,
    KeyFileError,
    keygen,
    load_or_create_identity,
    load_private,
    load_public,
    raw_private,
)
from linerec.store.ring import QUARANTINE
from streamed import streamed_site

OPTED_OUT = "box1-00000001-20261130T000000Z-line1"  # its marker whole: opted out before a cut
CUT = "box1-00000002-20261130T000100Z-line1"  # its marker being written when the power went


def test_the_uplink_removes_what_a_cut_left_and_publishes_no_bogus_discard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "ring" / "outbox"
    (outbox / "discards").mkdir(parents=True)
    (outbox / "uploads").mkdir()
    (outbox / "discards" / OPTED_OUT).write_bytes(b"")
    (outbox / "connection").write_text("7")
    (outbox / "seq").write_text("0")
    left = [
        killed_mid_write(outbox / "discards" / CUT),
        killed_mid_write(outbox / "uploads" / f"{OPTED_OUT}.json"),
        killed_mid_write(outbox / "connection"),
        killed_mid_write(outbox / "command-counter"),
        killed_mid_write(outbox / "seq"),
        killed_mid_write(outbox / "000000000001.json"),
    ]
    assert all(temp_target(path.name) for path in left)
    caplog.set_level(logging.INFO)
    with streamed_site(tmp_path) as site:
        # the cut marker's recording was discarded all the same: said by its id, never by
        # its temporary file's name
        assert sorted(site.uplink.streams.discarded()) == [OPTED_OUT, CUT]
        wait_until(lambda: site.uplink.streams.discarded() == [], "the discarded acks")
        assert list((outbox / "discards").iterdir()) == []
        assert (outbox / "connection").read_text() == "8"  # the real counter, not the torn one
    assert [path for path in left if path.exists()] == []
    logged = caplog.text
    for path in left:
        assert str(path) in logged, f"{path.name} was removed without a word"


def test_a_cut_temporary_file_of_no_recording_of_this_device_is_only_removed(
    tmp_path: Path,
) -> None:
    discards = tmp_path / "ring" / "outbox" / "discards"
    discards.mkdir(parents=True)
    left = [
        killed_mid_write(discards / "box2-00000001-20261130T000000Z-line1"),
        killed_mid_write(discards / "not-a-recording"),
    ]
    with streamed_site(tmp_path) as site:
        assert site.uplink.streams.discarded() == []
    assert list(discards.iterdir()) == []
    assert [path for path in left if path.exists()] == []


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    """A sweep in another process (a one-off flush beside the daemon) passes over a file still
    being written: the writer's rename then succeeds."""
    target = tmp_path / "connection"
    with atomic_file(target) as out:
        out.write(b"12")
        (temp,) = tmp_path.iterdir()
        assert remove_temps(tmp_path) == []
        assert temp.exists()
    assert target.read_text() == "12"
    assert list(tmp_path.iterdir()) == [target]


def test_a_sweep_just_before_the_rename_passes_over_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer holds its lock until the rename itself, not only while it writes: a sweep
    at the last moment leaves the file to be renamed."""
    import linerec.atomic

    swept: list[Path] = []
    replace = linerec.atomic.os.replace

    def sweep_then_replace(source: str | Path, target: str | Path) -> None:
        swept.extend(remove_temps(tmp_path))
        replace(source, target)

    monkeypatch.setattr(linerec.atomic.os, "replace", sweep_then_replace)
    target = tmp_path / "seq"
    with atomic_file(target) as out:
        out.write(b"41")
    assert swept == []
    assert target.read_text() == "41"
    assert target.stat().st_mode & 0o777 == 0o600


def test_only_exact_temporary_names_go(tmp_path: Path) -> None:
    real = [".hidden", "connection", ".connection.tmp", ".connection.ABCDEFGH", ".x.abc"]
    for name in real:
        (tmp_path / name).write_text("kept")
    (tmp_path / ".dir.abcd1234").mkdir()
    (tmp_path / ".link.abcd1234").symlink_to(tmp_path / "connection")
    left = killed_mid_write(tmp_path / "connection")
    assert remove_temps(tmp_path) == [left]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [*real, ".dir.abcd1234", ".link.abcd1234"]
    )


def test_opening_the_store_removes_a_cut_renewed_certificate_and_epoch_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keygen(tmp_path / "keys")
    config = tmp_path / "linerec.toml"
    config.write_text(
        '[device]\nid = "box1"\n[store]\ndir = "ring"\nrecipients = ["keys/collector.pub"]\n'
    )
    store = tmp_path / "ring"
    store.mkdir()
    (store / QUARANTINE).mkdir()
    recording = store / QUARANTINE / "box1-00000003-20261130T000200Z-line1.lrec"
    recording.write_bytes(b"kept for a person to look at")
    left = [
        killed_mid_write(store / RENEWED_CERT),
        killed_mid_write(store / EPOCH_FILE),
        killed_mid_write(store / NOTES),  # the calls in progress (daemon/callnotes.py)
        killed_mid_write(recording.with_name(recording.name + ".why")),
    ]
    caplog.set_level(logging.INFO)
    open_store(load_config(config), emit=lambda event: None, clock=lambda: 0.0)
    assert [path for path in left if path.exists()] == []
    assert not (store / RENEWED_CERT).exists() and not (store / EPOCH_FILE).exists()
    assert recording.exists()
    for path in left:
        assert str(path) in caplog.text


IDENTITY = """
import resource, sys
from pathlib import Path
from linerec.store.keys import load_or_create_identity
resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))  # the card full after 40 bytes
load_or_create_identity(Path(sys.argv[1]))
"""


def test_an_identity_cut_at_first_start_is_not_left_torn(tmp_path: Path) -> None:
    """The appliance's identity made at its first start and cut off mid-write (a full card
    here; a power cut alike): no torn identity.key that every later start would choke on;
    the next start makes a whole one, and keeps it."""
    path = tmp_path / "identity.key"
    cut = subprocess.run([sys.executable, "-c", IDENTITY, str(path)], capture_output=True)
    assert cut.returncode != 0
    assert not path.exists(), f"torn: {path.read_bytes()!r}"
    assert [p for p in tmp_path.iterdir() if temp_target(p.name)] == []
    made = load_or_create_identity(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert raw_private(load_or_create_identity(path)) == raw_private(made)


KEYGEN = """
import resource, sys
from pathlib import Path
from linerec.cli import main
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
sys.exit(main(["keygen", "--out", sys.argv[1]]))
"""


def test_a_collector_key_cut_mid_write_is_not_left_torn(tmp_path: Path) -> None:
    """`linerec keygen` cut off mid-write leaves no torn key it would then refuse to
    replace (`already exists`); the error names the file; run again, it makes the pair."""
    keys = tmp_path / "keys"
    cut = subprocess.run([sys.executable, "-c", KEYGEN, str(keys)], capture_output=True, text=True)
    assert cut.returncode != 0
    assert cut.stderr.startswith(f"linerec: error: {keys / 'collector.key'}: not written")
    assert len(cut.stderr.splitlines()) == 1, cut.stderr
    assert list(keys.iterdir()) == []
    private, public = keygen(keys)
    assert load_public(public).kid == load_private(private).kid
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    with pytest.raises(KeyFileError, match="already exists"):
        keygen(keys)


def test_keygen_completes_a_pair_a_cut_left_without_its_public_key(tmp_path: Path) -> None:
    """A cut between the private key's write and the public key's left `collector.key` alone:
    `linerec keygen` again writes the public key of that private key (it never makes another
    private key over one there); a public key alone is refused, naming the missing file."""
    keys = tmp_path / "keys"
    private, public = keygen(keys)
    made = public.read_bytes()
    public.unlink()
    assert keygen(keys) == (private, public)
    assert public.read_bytes() == made
    assert public.stat().st_mode & 0o777 == 0o644
    with pytest.raises(KeyFileError, match="already exists"):
        keygen(keys)
    private.unlink()
    with pytest.raises(KeyFileError, match=f"{private}: missing beside {public}"):
        keygen(keys)
    assert public.read_bytes() == made
