"""Which settings a run read: the recording config, what the header shows, and the warnings for the rest."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from aotcheck import _reads
from aotcheck._config import RunConfig, validate
from aotcheck._report import Report
from aotcheck.render._report import markdown, settings_lines
from tests.unit._reports import header, linen_leaves


class Fields(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    hidden: int = 64
    layers: int = 2
    rate: float = 0.1


def config(**values: Any) -> RunConfig:
    return validate({"mesh_axes": ["data", "fsdp", "context"], **values}, Fields)


def test_reading_a_field_notes_it_and_only_it() -> None:
    cfg = _reads.recording(config())
    assert cfg.model.hidden == 64 and cfg.core.dtype == "bfloat16"
    assert cfg.reads == {"hidden", "dtype"}


def test_the_recorded_parts_are_the_model_s_own_classes_and_equal_the_originals() -> None:
    plain = config()
    cfg = _reads.recording(plain)
    assert isinstance(cfg.model, Fields) and type(cfg.model).__name__ == "Fields"
    assert cfg.model == plain.model and hash(cfg.model) == hash(plain.model)
    assert cfg.reads == set()  # comparing and hashing (a cache key, Flax's bookkeeping) is not a use


@pytest.mark.parametrize("whole", [
    lambda m: m.model_dump(), lambda m: dict(m), lambda m: vars(m), copy.deepcopy, lambda m: m.model_copy(),
], ids=["model_dump", "dict", "vars", "deepcopy", "model_copy"])
def test_reading_the_whole_object_notes_every_field(whole: Any) -> None:
    cfg = _reads.recording(config())
    whole(cfg.model)
    assert cfg.reads == {"hidden", "layers", "rate"}


def test_the_parallelism_of_a_user_axis_is_noted_by_its_key_and_shown_with_its_value() -> None:
    cfg = _reads.recording(config(ici_context_parallelism=2))
    assert cfg.ici("context") == 2 and cfg.dcn("context") == 1 and cfg.ici("fsdp") == 1
    assert cfg.reads == {"ici_context_parallelism", "dcn_context_parallelism", "ici_fsdp_parallelism"}
    core, own = _reads.settings_read(cfg, ())
    assert core == {"ici_context_parallelism": 2, "dcn_context_parallelism": 1, "ici_fsdp_parallelism": 1}
    assert own == {}


def test_plain_reads_note_nothing_and_the_record_survives() -> None:
    cfg = _reads.recording(config(), read=("model_name",))
    assert _reads.plain(cfg).as_dict()["hidden"] == 64 and _reads.plain(cfg).reads is None
    assert cfg.reads == {"model_name"}


def test_the_header_shows_what_was_read_without_rules_or_ignored_settings() -> None:
    cfg = _reads.recording(config(layers=3))
    _ = (cfg.model.layers, cfg.core.scan_layers, cfg.core.learning_rate, cfg.rules)
    core, own = _reads.settings_read(cfg, ignores=("scan_layers",))
    assert core == {"learning_rate": 3e-5}
    assert own == {"layers": 3}


def settings_report(**changes: Any) -> Report:
    return Report(header=header(**changes), leaves=linen_leaves())


def test_a_key_set_that_nothing_read_is_one_line_naming_it_and_where_it_was_set() -> None:
    h = header(config={"learning_rate": 3e-5}, own_config={"layers": 3})
    given = {"layers": "--set layers=3", "rate": "--set rate=0.2", "learning_rate": "--config run.yml",
             "scan_layers": "--set scan_layers=false", "logical_axis_rules": "--config run.yml"}
    assert _reads.unread_warnings(h, given, ignores=("scan_layers",)) == [
        "--set rate=0.2: nothing read 'rate' in this run (model 'tiny', linen path); it changes nothing",
        "--set scan_layers=false: model 'tiny' does not read this setting (its ModelSpec ignores it), so it changes nothing",
    ]


def test_the_rendered_header_labels_the_model_s_settings_and_aotcheck_s() -> None:
    report = settings_report(config={"learning_rate": 3e-5, "model_name": "tiny", "ici_fsdp_parallelism": 4,
                                     "mu_dtype": None, "scan_layers": False},
                             own_config={"layers": 3, "acts": ["silu", "linear"], "name": "a"})
    assert settings_lines(report) == [
        'model settings: acts=["silu", "linear"], layers=3, name=a',
        "aotcheck settings used: learning_rate=3e-05, mu_dtype=null, scan_layers=false",
    ]
    assert "- aotcheck settings used: learning_rate=3e-05, mu_dtype=null, scan_layers=false" in markdown(report)


def test_a_report_written_before_own_config_is_read() -> None:
    data = settings_report(config={"hidden": 1}).model_dump(mode="json", by_alias=True)
    del data["header"]["own_config"]
    assert Report.model_validate(data).header.own_config == {}
