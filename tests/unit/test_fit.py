"""`aotcheck fit`'s search, rows, Pareto marks and recommendation, with a fake builder (no compile)."""

from __future__ import annotations

import json

import pytest

from aotcheck import render
from aotcheck._analysis import Compile
from aotcheck._errors import EXIT_BUILD, EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_USAGE, UsageError
from aotcheck._fit import MAX_BATCH, Outcome, search
from aotcheck._fit_options import expand_topologies, parse_mesh
from aotcheck._pipeline import Request
from aotcheck._true_cost import PerStep, Traffic

GIB = 1024**3
CAPACITY = 16 * GIB


class Fake:
    """Peak = fixed + per-batch cost by remat policy; tensor=3 cannot be laid out; v5p-32 fails to build; records each request."""

    def __init__(self, per_batch: dict[str, int] | None = None, fixed: int = 2 * GIB) -> None:
        self.per_batch = per_batch or {"full": GIB, "minimal": 2 * GIB, "none": 3 * GIB}
        self.fixed = fixed
        self.seen: list[dict[str, str]] = []

    def __call__(self, request: Request) -> Outcome:
        sets = dict(s.split("=", 1) for s in request.overrides)
        self.seen.append({"topology": request.topology, **sets})
        if sets.get("ici_tensor_parallelism") == "3":
            return Outcome(None, None, "mesh: ICI parallelism tensor=3 = 3 does not divide the 4 devices", EXIT_USAGE)
        if request.topology == "v5p-32":
            return Outcome(None, None, "model 'tiny': the compiler failed", EXIT_BUILD)
        needed = self.fixed + self.per_batch[sets["remat_policy"]] * int(sets["per_device_batch_size"])
        return Outcome(Compile(verdict=Compile.assess(needed, CAPACITY), capacity_bytes_per_device=CAPACITY,
                               needed_bytes_per_device=needed, memory_per_device=None,
                               per_step=PerStep(flops=1e12, bytes_accessed=1e9, transcendentals=0),
                               collectives={"all-gather": Traffic(count=2, bytes=3e6), "all-reduce": Traffic(count=1, bytes=1e6)}))


def run(fake: Fake, **options: object) -> object:
    options.setdefault("remat", ["full"])
    return search(Request(topology="v5p-8"), builder=fake, **options)[0]  # type: ignore[arg-type]


def test_search_finds_b_that_fits_and_compiles_b_plus_one_that_does_not() -> None:
    fake = Fake()  # full: 2 + B GiB in 16 GiB -> B = 14
    result = run(fake)
    row = result.rows[0]
    assert row.max_per_device_batch_size == 14
    outcomes = {p.batch: p.outcome for p in row.probes}
    assert outcomes[14] == "fits" and outcomes[15] == "does not fit"
    assert [s["per_device_batch_size"] for s in fake.seen] == ["1", "2", "4", "8", "16", "12", "14", "15"]
    assert row.peak_bytes_per_device == 16 * GIB and row.headroom_bytes_per_device == 0
    assert row.batch_per_chip == 14 * 4 / 4 and row.collective_bytes == 4e6 and row.flops == 1e12 and row.pareto
    assert result.exit_code == EXIT_OK and result.builds == 8
    assert result.recommendation is not None
    assert result.recommendation.overrides[-2:] == ("remat_policy=full", "per_device_batch_size=14")


def test_infeasible_mesh_is_a_row_with_its_reason_and_the_search_goes_on() -> None:
    result = run(Fake(), meshes=["tensor=3", "fsdp=4"], remat=["full", "minimal"])
    rows = {(r.mesh, r.remat_policy): r for r in result.rows}
    assert [(r.mesh, r.remat_policy) for r in result.rows] == [
        ("tensor=3", "full"), ("tensor=3", "minimal"), ("fsdp=4", "full"), ("fsdp=4", "minimal")]
    bad = rows[("tensor=3", "full")]
    assert bad.max_per_device_batch_size is None and bad.reason is not None and "tensor=3" in bad.reason
    assert len(bad.probes) == 1 and not bad.pareto
    assert rows[("fsdp=4", "full")].max_per_device_batch_size == 14
    assert rows[("fsdp=4", "minimal")].max_per_device_batch_size == 7
    assert result.recommendation is not None and result.recommendation.mesh == "fsdp=4"


def test_pareto_marks_and_recommendation_order() -> None:
    # full: 14 at 16 GiB peak; minimal: 7 at 16 GiB (dominated); none: 4 at 14 GiB (less peak: Pareto).
    result = run(Fake(), remat=["none", "minimal", "full"])
    marks = {r.remat_policy: (r.max_per_device_batch_size, r.pareto) for r in result.rows}
    assert marks == {"none": (4, True), "minimal": (7, False), "full": (14, True)}
    assert result.recommendation is not None and result.recommendation.remat_policy == "full"


def test_nothing_fits_gives_null_batch_the_reason_and_exit_4() -> None:
    result = run(Fake(fixed=20 * GIB))
    row = result.rows[0]
    assert row.max_per_device_batch_size is None and row.peak_bytes_per_device is None
    assert row.reason == "does not fit at per-device batch 1: needs 21.00 GiB of 16.00 GiB"
    assert result.recommendation is None and result.exit_code == EXIT_DOES_NOT_FIT
    assert json.loads(render.fit_json(result))["rows"][0]["max_per_device_batch_size"] is None


def test_a_failed_build_stops_only_its_row() -> None:
    result = run(Fake(), topologies=["v5p-32", "v5p-8"])
    assert result.rows[0].reason == "build failed: model 'tiny': the compiler failed"
    assert result.rows[1].max_per_device_batch_size == 14


def test_all_rows_infeasible_is_a_usage_exit_and_a_failed_build_exit_3() -> None:
    assert run(Fake(), meshes=["tensor=3"]).exit_code == EXIT_USAGE
    assert run(Fake(), topologies=["v5p-32"]).exit_code == EXIT_BUILD


def test_max_compiles_bounds_the_builds_and_says_so() -> None:
    fake = Fake()
    result = run(fake, max_compiles=3)
    assert len(fake.seen) == 3 and result.builds == 3
    assert result.stopped == "stopped after --max-compiles 3 builds"
    assert result.rows[0].max_per_device_batch_size == 4 and result.rows[0].reason == result.stopped


def test_fixed_batch_list_builds_each_listed_batch() -> None:
    fake = Fake()
    result = run(fake, batches=[8, 1, 32])
    assert sorted(int(s["per_device_batch_size"]) for s in fake.seen) == [1, 8, 32]
    assert result.rows[0].max_per_device_batch_size == 8


def test_global_batch_sets_the_per_device_batch_and_rejects_a_fraction() -> None:
    fake = Fake()
    result = search(Request(), builder=fake, topologies=["v5p-8", "v5p-16", "v5p-{32..64}"], remat=["full"],
                    global_batch=24)[0]
    by_topology = {r.topology: r for r in result.rows}
    assert by_topology["v5p-8"].max_per_device_batch_size == 6
    assert by_topology["v5p-16"].max_per_device_batch_size == 3
    assert "global batch 24 is not a whole per-device batch on 16 devices (1.5)" in (by_topology["v5p-32"].reason or "")
    assert by_topology["v5p-64"].probes == ()
    assert len(fake.seen) == 2
    # A fixed global batch: the fewest chips that fit is the answer.
    assert result.recommendation is not None and result.recommendation.topology == "v5p-8"


def test_search_stops_at_the_cap() -> None:
    result = run(Fake(per_batch={"full": 1}))
    assert result.rows[0].max_per_device_batch_size == MAX_BATCH
    assert "cap" in (result.rows[0].reason or "")


def test_topology_ranges_and_mesh_texts() -> None:
    assert expand_topologies(["v5p-{64..256}", "v5p-128", "v5e-1"]) == ["v5p-64", "v5p-128", "v5p-256", "v5e-1"]
    assert parse_mesh("tensor=4,fsdp=16") == ("fsdp=16,tensor=4", (
        "ici_data_parallelism=1", "ici_pipeline_parallelism=1", "ici_fsdp_parallelism=16",
        "ici_fsdp_transpose_parallelism=1", "ici_sequence_parallelism=1", "ici_tensor_parallelism=4",
        "ici_expert_parallelism=1"))
    for bad, words in [("v5p-{3..5}", "no v5p slice"), ("v5p-{64-512}", "family-{low..high}"),
                       ("v9-8", "unknown topology")]:
        with pytest.raises(UsageError, match=words):
            expand_topologies([bad])
    for bad, words in [("fsdb=4", "did you mean fsdp"), ("fsdp", "needs a size"), ("fsdp=0", "needs a size"), ("", "axis=size")]:
        with pytest.raises(UsageError, match=words):
            parse_mesh(bad)


@pytest.mark.parametrize(("options", "words"), [
    ({"remat": ["fulll"]}, "unknown policy 'fulll'; did you mean full"),
    ({"batches": [2], "global_batch": 64}, "exclude each other"),
    ({"batches": [0]}, "positive"),
    ({"max_compiles": 0}, "at least 1"),
])
def test_bad_options_are_one_line_usage_errors(options: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        search(Request(topology="v5p-8"), builder=Fake(), **options)  # type: ignore[arg-type]


def test_renderings_carry_the_rows_marks_and_recommendation() -> None:
    result = run(Fake(), meshes=["tensor=3", "fsdp=4"])
    md = render.fit_markdown(result)
    assert "| * | v5p-8 | fsdp=4 | full | 14 |" in md and "tensor=3 = 3 does not divide" in md
    assert "**recommended: v5p-8, mesh fsdp=4, remat full: per-device batch 14" in md
    data = json.loads(render.fit_json(result))
    assert {"topology", "mesh", "remat_policy", "max_per_device_batch_size", "peak_bytes_per_device",
            "usable_bytes_per_device", "headroom_bytes_per_device", "pareto", "reason"} <= set(data["rows"][0])
    assert data["recommendation"]["per_device_batch_size"] == 14
