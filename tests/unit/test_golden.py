"""Golden files: the four-file split of a report, read back, format 1 still read, atomic replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aotcheck import _golden
from aotcheck._errors import UsageError
from aotcheck._report import Report

from ._reports import leaf, nnx_report, report

REPO = Path(__file__).resolve().parents[2]


def same_content(a: Report, b: Report) -> None:
    assert a.leaves == b.leaves
    assert a.batch == b.batch
    assert a.compile == b.compile


def test_files_of_a_compiled_report_are_the_four_files():
    files = _golden.files_of(report())
    assert set(files) == {"named_shardings.json", "logical_annotations.json", "state_dtypes.json", "compile.json"}
    for text in files.values():
        assert text.endswith("\n")
        json.loads(text)
    assert json.loads(files["named_shardings.json"])["schema"] == _golden.SCHEMA


def test_a_sharding_only_report_has_no_compile_file():
    assert "compile.json" not in _golden.files_of(report(compiled=False))


def test_short_lists_stay_on_one_line_and_times_are_left_out():
    files = _golden.files_of(report())
    assert '"partition_spec": ["fsdp", "tensor"],' in files["named_shardings.json"]
    assert '"shape": [64, 32]' in files["named_shardings.json"]
    assert '"timings"' not in "".join(files.values()) and "compile_seconds" not in "".join(files.values())
    # Derived figures (per-device shapes, bytes) are recomputed on reading, never written.
    leaf_files = "".join(text for name, text in files.items() if name != _golden.COMPILE)
    assert '"shard_shape"' not in leaf_files
    assert '"bytes"' not in leaf_files


def test_round_trip_linen(tmp_path):
    original = report()
    directory = tmp_path / "tiny" / "v5p-16" / "linen"
    assert _golden.write_golden(directory, original) == list(_golden.FILES)
    back = _golden.read_golden(directory)
    same_content(back, original)
    assert back.header.rules == original.header.rules and back.header.mesh == original.header.mesh
    assert back.header.path == "linen" and back.header.backend == "mock"


def test_round_trip_nnx_with_rng_keys(tmp_path):
    # NNX keeps typed PRNG keys (dtype key<fry>) in its state; their goldens must read back.
    original = nnx_report()
    key = original.leaves["model/rngs/default/key/value"]
    assert key.dtype == "key<fry>" and key.role == "rng" and key.bytes == 8
    directory = tmp_path / "nnx"
    _golden.write_golden(directory, original)
    assert '"dtype": "key<fry>"' in (directory / "state_dtypes.json").read_text()
    back = _golden.read_golden(directory)
    same_content(back, original)
    assert back.totals == original.totals


def test_golden_text_is_stable_across_a_round_trip(tmp_path):
    _golden.write_golden(tmp_path / "a", nnx_report())
    _golden.write_golden(tmp_path / "b", _golden.read_golden(tmp_path / "a"))
    for name in _golden.FILES:
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_rewriting_the_same_report_changes_nothing(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    assert _golden.write_golden(directory, report()) == []


def test_write_names_the_changed_files(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    leaves = dict(report().leaves)
    leaves["params/decoder/norm/scale"] = leaf("param", (64,), "bfloat16", ("embed",), ("fsdp",))
    assert _golden.write_golden(directory, report(leaves)) == ["state_dtypes.json"]
    assert _golden.read_golden(directory).leaves["params/decoder/norm/scale"].dtype == "bfloat16"


def test_a_sharding_only_update_keeps_the_compile_file(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    compile_text = (directory / "compile.json").read_text()
    _golden.write_golden(directory, report(compiled=False))
    assert (directory / "compile.json").read_text() == compile_text
    assert _golden.read_golden(directory).compile == report().compile


def test_a_golden_without_compile_file_reads_without_compile(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report(compiled=False))
    assert not _golden.has_compile(directory)
    assert _golden.read_golden(directory).compile is None


def format_1(directory: Path) -> None:
    """Rewrite named_shardings.json as golden format 1 wrote it: no schema, batch entries with `spec`."""
    path = directory / "named_shardings.json"
    data = json.loads(path.read_text())
    del data["schema"]
    data["batch"] = {k: {("spec" if f == "partition_spec" else f): v for f, v in e.items()}
                     for k, e in data["batch"].items()}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_a_format_1_golden_is_still_read(tmp_path):
    directory = tmp_path / "nnx"
    _golden.write_golden(directory, nnx_report())
    format_1(directory)
    assert '"spec"' in (directory / "named_shardings.json").read_text()
    assert _golden.is_old_format(directory)
    same_content(_golden.read_golden(directory), nnx_report())


def test_the_repositorys_goldens_are_read():
    directory = REPO / "golden" / "tiny" / "v5p-8" / "nnx"
    back = _golden.read_golden(directory)
    assert back.header.path == "nnx" and back.header.model == "tiny"
    assert back.leaves and all(lf.bytes > 0 for lf in back.leaves.values())
    assert back.batch["inputs"].partition_spec == ("fsdp",)


def test_a_malformed_golden_file_is_a_one_line_error_naming_it(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    dtypes = directory / "state_dtypes.json"
    data = json.loads(dtypes.read_text())
    data["leaves"]["step"]["role"] = "counter"
    dtypes.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=rf"^golden file {dtypes}: leaves\.step\.role: .*; regenerate it$") as info:
        _golden.read_golden(directory)
    assert "\n" not in str(info.value)


def test_a_golden_file_that_is_not_json_is_a_one_line_error_naming_it(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    annotations = directory / "logical_annotations.json"
    annotations.write_text('{"rules": [,\n')
    with pytest.raises(UsageError, match=rf"^golden file {annotations} is not valid JSON \(line 1\)") as info:
        _golden.read_golden(directory)
    assert "\n" not in str(info.value)


def test_an_integer_beyond_int64_in_a_golden_file_is_refused(tmp_path):
    # Validation alone would read it as a Python int: the text is checked before.
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    shardings = directory / "named_shardings.json"
    data = json.loads(shardings.read_text())
    data["shardings"]["step"]["shape"] = [1 << 64]
    shardings.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=rf"^golden file {shardings} is not valid: the number 18446744073709551616"
                                         r"\.\.\. is out of range"):
        _golden.read_golden(directory)


def test_golden_files_that_disagree_on_leaves_are_refused(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    dtypes = directory / "state_dtypes.json"
    data = json.loads(dtypes.read_text())
    del data["leaves"]["step"]
    dtypes.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=rf"^golden directory {directory}: state_dtypes\.json and named_shardings\.json "
                                         r"disagree on leaf step; regenerate it$"):
        _golden.read_golden(directory)


def test_a_spec_the_mesh_cannot_carry_is_refused(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    shardings = directory / "named_shardings.json"
    data = json.loads(shardings.read_text())
    data["shardings"]["params/decoder/norm/scale"]["shape"] = [63]
    shardings.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="leaf params/decoder/norm/scale has a PartitionSpec its mesh cannot carry"):
        _golden.read_golden(directory)


def test_recover_restores_the_backup_after_a_kill_between_the_renames(tmp_path):
    directory = tmp_path / "tiny" / "linen"
    _golden.write_golden(directory, report())
    # Killed after `directory -> .linen.old` and before `staging -> directory`.
    backup = directory.parent / ".linen.old"
    staging = directory.parent / ".linen.new.abc123"
    directory.rename(backup)
    staging.mkdir()
    (staging / "named_shardings.json").write_text("half written")
    assert not directory.exists()
    _golden.recover(directory)
    assert directory.is_dir() and not backup.exists() and not staging.exists()
    same_content(_golden.read_golden(directory), report())


def test_recover_drops_a_stale_backup_when_the_swap_completed(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    backup = tmp_path / ".linen.old"
    backup.mkdir()
    (backup / "named_shardings.json").write_text("old")
    _golden.recover(directory)
    assert not backup.exists()
    same_content(_golden.read_golden(directory), report())


def test_recover_leaves_other_cases_alone(tmp_path):
    other = tmp_path / ".nnx.new.xyz"
    other.mkdir()
    _golden.recover(tmp_path / "linen")
    assert other.is_dir()


def test_an_interrupted_update_is_finished_before_the_next_write(tmp_path):
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    directory.rename(tmp_path / ".linen.old")
    assert _golden.exists(directory)  # recovers first
    assert _golden.write_golden(directory, report()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linen"]


def test_find_dirs_skips_hidden_staging_copies(tmp_path):
    _golden.write_golden(tmp_path / "tiny" / "v5p-16" / "linen", report())
    _golden.write_golden(tmp_path / "tiny" / "v5p-16" / "nnx", nnx_report())
    (tmp_path / "tiny" / "v5p-16" / ".nnx.new.q").mkdir()
    (tmp_path / "tiny" / "v5p-16" / ".nnx.new.q" / "named_shardings.json").write_text("{}")
    assert _golden.find_dirs(tmp_path) == [tmp_path / "tiny" / "v5p-16" / "linen", tmp_path / "tiny" / "v5p-16" / "nnx"]


def test_a_reader_during_an_update_does_not_break_it(tmp_path, monkeypatch):
    # `aotcheck check` or `diff` reading the case (which recovers first) while `golden update`
    # writes it: the update must still land whole, not fail on its vanished staging copy.
    directory = tmp_path / "linen"
    _golden.write_golden(directory, report())
    leaves = dict(report().leaves)
    leaves["step"] = leaf("step", (), "int64", None)
    fsync = _golden.os.fsync
    readers = []

    def fsync_then_read(fd: int) -> None:
        fsync(fd)
        if not readers:
            readers.append(_golden.exists(directory))

    monkeypatch.setattr(_golden.os, "fsync", fsync_then_read)
    assert _golden.write_golden(directory, report(leaves)) == ["state_dtypes.json"]
    monkeypatch.undo()
    assert readers == [True]
    assert _golden.read_golden(directory).leaves["step"].dtype == "int64"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["linen"]
