"""Atomic writes (cadenza.utils.io): the permissions a plain open() gives, and a failed write loses nothing."""

from __future__ import annotations

import os
import stat

import pytest

from cadenza.utils.io import atomic_write_json, atomic_write_text, atomic_write_with


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_gets_the_umask_permissions_of_a_plain_open(tmp_path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "out" / "report.json", {"verdict": "DEPLOY"})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    written = stat.S_IMODE((tmp_path / "out" / "report.json").stat().st_mode)
    assert written == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "policy.json"
    atomic_write_text(path, "old\n")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(path, half_then_fail)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]


def test_a_registered_version_and_a_new_folder_get_the_umask_permissions(tmp_path) -> None:
    """A registry version is staged in a new folder and renamed into place: it must be as readable as a folder
    made with os.mkdir (0o755 under umask 0o022), not tempfile.mkdtemp's owner-only 0o700."""
    from cadenza.governance.registry import Registry
    from cadenza.utils.io import new_temp_dir

    old = os.umask(0o022)
    try:
        version = Registry(tmp_path).register("residual", {"policy.bin": b"weights"})
        staged = new_temp_dir(tmp_path / "out", ".data.", ".tmp")
    finally:
        os.umask(old)
    vdir = tmp_path / ".cadenza" / "registry" / "residual" / version
    assert stat.S_IMODE(vdir.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in vdir.iterdir())
    assert stat.S_IMODE(staged.stat().st_mode) == 0o755 and staged.name.startswith(".data.")
    assert staged.name.endswith(".tmp") and not any(staged.iterdir())
