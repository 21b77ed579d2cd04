"""Registry: immutable versions, ledger, promote / rollback round trip, tampering refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza.errors import ArtefactError, CadenzaError
from cadenza.governance.registry import Registry


def test_register_promote_rollback_round_trip(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v1 = reg.register("residual", {"policy.pt": b"one"}, {"note": "first"})
    v2 = reg.register("residual", {"policy.pt": b"two"})
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.baseline("residual") is None
    reg.promote("residual", v1)
    assert (tmp_path / "residual" / "residual_policy.pt").read_bytes() == b"one"
    reg.promote("residual", v2)
    assert reg.baseline("residual") == v2
    assert (tmp_path / "residual" / "residual_policy.pt").read_bytes() == b"two"
    assert reg.rollback("residual") == v1
    assert (tmp_path / "residual" / "residual_policy.pt").read_bytes() == b"one"
    assert reg.rollback("residual", to=v2) == v2
    events = [e["event"] for e in reg.ledger("residual")]
    assert events == ["register", "register", "promote", "promote", "rollback", "rollback"]
    # versions are immutable: the files of v0001 are untouched by all of the above
    assert (reg.root / "residual" / v1 / "policy.pt").read_bytes() == b"one"


def test_rollback_without_history_is_a_clear_error(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("student", {"student.onnx": b"x"})
    with pytest.raises(CadenzaError, match="no earlier student baseline"):
        reg.rollback("student")
    with pytest.raises(CadenzaError, match="does not exist"):
        reg.rollback("student", to="v0042")


def test_rollback_publishes_exactly_the_baselines_files(tmp_path: Path) -> None:
    """A student with an int8 file, then one without: after promotion or rollback the published
    folder holds only the baseline's own files, never a stale int8 export from another version."""
    reg = Registry(tmp_path)
    v1 = reg.register("student", {"student.onnx": b"fp32-one"})
    v2 = reg.register("student", {"student.onnx": b"fp32-two", "student.int8.onnx": b"int8-two"})
    reg.promote("student", v1)
    reg.promote("student", v2)
    assert (tmp_path / "student" / "student.int8.onnx").read_bytes() == b"int8-two"
    assert reg.rollback("student") == v1
    assert (tmp_path / "student" / "student.onnx").read_bytes() == b"fp32-one"
    assert not (tmp_path / "student" / "student.int8.onnx").exists()
    assert (reg.root / "student" / v2 / "student.int8.onnx").read_bytes() == b"int8-two"  # the version keeps it
    assert reg.rollback("student", to=v2) == v2
    assert (tmp_path / "student" / "student.int8.onnx").read_bytes() == b"int8-two"


def test_tampered_artefact_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v = reg.register("residual", {"policy.pt": b"weights"})
    (reg.root / "residual" / v / "policy.pt").write_bytes(b"evil")
    with pytest.raises(ArtefactError, match="hash does not match"):
        reg.path("residual", v, "policy.pt")
    with pytest.raises(ArtefactError):
        reg.promote("residual", v)
    assert reg.baseline("residual") is None


def test_ledger_is_append_only_json_lines(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    v = reg.register("prompt", {"SYSTEM_PROMPT.md": b"hello"})
    reg.record_verdict("prompt", v, "BLOCK", ["FAIL x"], {"a": 1}, "blocked")
    lines = (reg.root / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 2
    last = json.loads(lines[-1])
    assert last["verdict"] == "BLOCK" and last["user"] and last["time"]
    assert reg.last_verdict("prompt", v)["reasons"] == ["FAIL x"]


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="unknown artefact kind"):
        Registry(tmp_path).versions("weights")
