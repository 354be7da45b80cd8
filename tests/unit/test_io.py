"""Reading YAML through the cache: a text parsed once is served as JSON, and only when JSON holds it exactly."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from aotcheck import _cache, _io
from aotcheck._errors import UsageError


@pytest.fixture(autouse=True)
def cache_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AOTCHECK_NO_CACHE", raising=False)
    return tmp_path / "cache"


def refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(text: str) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(_io, "loads_yaml", parse)


def test_a_text_read_before_is_not_parsed_again(tmp_path: Path, cache_in: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "c.yml"
    path.write_text("model: tiny\nrules: [[batch, [data, fsdp]], [embed, null]]\nrate: 0.5\nsteps: 3\nfast: true\n")
    first = _io.read_yaml(path, "config file")
    assert [p.name[:2] for p in cache_in.iterdir()] == ["y-"]
    refuse_parsing(monkeypatch)
    again = _io.read_yaml(path, "config file")
    assert again == first == {"model": "tiny", "rules": [["batch", ["data", "fsdp"]], ["embed", None]], "rate": 0.5,
                              "steps": 3, "fast": True}
    assert [type(again[k]) for k in ("rate", "steps", "fast")] == [float, int, bool]
    # The same text under another name is the same entry; another text is parsed.
    (tmp_path / "d.yml").write_text(path.read_text())
    assert _io.read_yaml(tmp_path / "d.yml", "config file") == first
    path.write_text("model: other\n")
    with pytest.raises(AssertionError, match="parsed again"):
        _io.read_yaml(path, "config file")


@pytest.mark.parametrize("text", ["when: 2024-01-01\n", "1: one\n", "on: yes\n", "x: .nan\n", "x: !!binary aGk=\n", "x: !!set {a}\n"])
def test_data_json_cannot_hold_exactly_is_parsed_each_time(tmp_path: Path, cache_in: Path, text: str):
    path = tmp_path / "c.yml"
    path.write_text(text)
    first = _io.read_yaml(path, "config file")
    assert not cache_in.exists() or list(cache_in.iterdir()) == []
    assert repr(_io.read_yaml(path, "config file")) == repr(first)
    if text.startswith("when"):
        assert first == {"when": datetime.date(2024, 1, 1)}


def test_a_damaged_entry_is_parsed_again_and_replaced(tmp_path: Path, cache_in: Path):
    path = tmp_path / "c.yml"
    path.write_text("steps: 3\n")
    _io.read_yaml(path, "config file")
    (entry,) = cache_in.iterdir()
    for damage in ("{not json", '{"steps": NaN}'):
        entry.write_text(damage)
        assert _io.read_yaml(path, "config file") == {"steps": 3}
        assert entry.read_text() == '{"steps": 3}'


def test_no_cache_and_an_unwritable_cache_still_read(tmp_path: Path, cache_in: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "c.yml"
    path.write_text("steps: 3\n")
    monkeypatch.setenv("AOTCHECK_NO_CACHE", "1")
    assert _io.read_yaml(path, "config file") == {"steps": 3}
    assert not cache_in.exists()
    monkeypatch.delenv("AOTCHECK_NO_CACHE")
    cache_in.write_text("a file where the directory should be")
    assert _io.read_yaml(path, "config file") == {"steps": 3}


def test_bad_yaml_is_a_one_line_error_every_time(tmp_path: Path, cache_in: Path):
    path = tmp_path / "c.yml"
    path.write_text("a: [1, 2\n")
    for _ in range(2):
        with pytest.raises(UsageError, match=rf"^config file {path} line 2 is not valid YAML: "):
            _io.read_yaml(path, "config file")
    assert not cache_in.exists()


def test_parsed_yaml_entries_are_counted_and_cleared(tmp_path: Path, cache_in: Path):
    path = tmp_path / "c.yml"
    path.write_text("steps: 3\n")
    _io.read_yaml(path, "config file")
    info = _cache.info()
    assert (info.reports, info.compiles, info.parsed_yaml, info.other) == (0, 0, 1, 0)
    assert _cache.clear() == 1 and list(cache_in.iterdir()) == []
