"""Bring your own model: the protocol, discovery, the example package, the documented snippet, and every error."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import aotcheck
from aotcheck import _canonical as canonical
from aotcheck._cli import app
from aotcheck._pipeline import Request, build_report, configure
from aotcheck._registry import resolve_model

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
MIXER_DIR = REPO / "examples" / "mixer"
MIXER = "aotcheck_mixer:MIXER"

# Models that go wrong in each way the issue names, next to a working one.
USER_MODELS = '''
import dataclasses

import jax
import optax
import pydantic
from aotcheck_mixer import MIXER
from flax import linen as nn
from flax import nnx

import aotcheck


def _small_images(cfg, n):
    return {
        "images": aotcheck.BatchField((n, 16, 16, 3), "float32", ("activation_batch", None, None, None)),
        "labels": aotcheck.BatchField((n,), "int32", ("activation_batch",)),
    }


def _raises(*args):
    raise ValueError("hidden_dim must be even\\nsecond line of the message")


def _labels_only(rank_axes, dtype="int32"):
    return lambda cfg, n: {"images": _small_images(cfg, n)["images"], "labels": aotcheck.BatchField((n,), dtype, rank_axes)}


BAD_BATCH = dataclasses.replace(MIXER, batch=_small_images)
BATCH_AXES = dataclasses.replace(MIXER, batch=_labels_only(("activation_batch", None)))
BATCH_DTYPE = dataclasses.replace(MIXER, batch=_labels_only(("activation_batch",), "int33"))
BATCH_TUPLE = dataclasses.replace(MIXER, batch=lambda cfg, n: {"images": ((n, 32, 32, 3), "float32")})
LINEN_RAISES = dataclasses.replace(MIXER, linen=_raises)
NNX_RAISES = dataclasses.replace(MIXER, nnx=_raises)
LINEN_ONLY = dataclasses.replace(MIXER, nnx=None)
NNX_ONLY = dataclasses.replace(MIXER, linen=None)
NOT_A_SPEC = 3
SGD = dataclasses.replace(MIXER, optimizer=lambda cfg: optax.sgd(0.1), defaults={"per_device_batch_size": 2})


class BiasedFields(pydantic.BaseModel):
    width: int = 256
    annotate_kernel: bool = True
    dtype: str = "float32"  # a key aotcheck reads too


def _kernel_axes(cfg):
    return ("embed", "mlp") if cfg.model.annotate_kernel else None


class LinenBiased(nn.Module):
    cfg: aotcheck.RunConfig

    @nn.compact
    def __call__(self, x):
        axes, init = _kernel_axes(self.cfg), nn.initializers.ones
        kernel = self.param("kernel", nn.with_logical_partitioning(init, axes) if axes else init, (64, self.cfg.model.width))
        bias = self.param("bias", nn.initializers.zeros, (self.cfg.model.width,))  # no logical axes
        return x @ kernel + bias


class NnxBiased(nnx.Module):
    def __init__(self, cfg, rngs):
        shape, axes = (64, cfg.model.width), _kernel_axes(cfg)
        self.kernel = nnx.Param(nnx.initializers.ones(rngs.params(), shape), **({"out_sharding": axes} if axes else {}))
        self.bias = nnx.Param(nnx.initializers.zeros(rngs.params(), (cfg.model.width,)))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


def _vectors(cfg, n):
    return {"x": aotcheck.BatchField((n, 64), "float32", ("activation_batch", None))}


UNANNOTATED = aotcheck.ModelSpec(
    name="biased", linen=LinenBiased, nnx=NnxBiased, batch=_vectors, loss=lambda apply, b: apply(b["x"]).mean(),
    config=BiasedFields,
)


class NnxDropout(nnx.Module):
    """Keeps its Rngs in the module, as NNX dropout models do: the state holds key<fry> leaves."""

    def __init__(self, cfg, rngs):
        init = jax.nn.initializers.lecun_normal()
        self.w = nnx.Param(init(rngs.params(), (64, 128)), out_sharding=("embed", "mlp"))
        self.dropout = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x):
        return self.dropout(x @ self.w[...])


RNG_STATE = aotcheck.ModelSpec(name="rng-state", nnx=NnxDropout, batch=_vectors, loss=lambda apply, b: apply(b["x"]).mean(),
                             rngs=("dropout",))
UNDECLARED_RNG = dataclasses.replace(RNG_STATE, rngs=())
'''


@pytest.fixture(autouse=True)
def model_path(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package and the test models importable, as `pip install` or PYTHONPATH would make them."""
    folder = tmp_path_factory.getbasetemp() / "user_models"
    if not folder.exists():
        folder.mkdir()
        (folder / "user_models.py").write_text(USER_MODELS)
        (folder / "broken_models.py").write_text("raise RuntimeError('cannot reach the weights server')\n")
        (folder / "no_path_models.py").write_text("import aotcheck\n\nM = aotcheck.ModelSpec(name='empty')\n")
    monkeypatch.syspath_prepend(str(MIXER_DIR))
    monkeypatch.syspath_prepend(str(folder))


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def fails(*args: str, code: int) -> str:
    exit_code, out, err = run(*args)
    assert exit_code == code, (out, err)
    err = err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in out + err
    return err


# The example package, compiled for a real TPU topology on both paths.


def test_mixer_compiles_for_a_tpu_topology_on_both_paths_to_the_same_program() -> None:
    reports = {
        path: build_report(Request(topology="v5p-8", model=MIXER, pure_nnx=path == "nnx", backend="libtpu"))
        for path in ("linen", "nnx")
    }
    for path, report in reports.items():
        assert (report.header.path, report.header.backend, report.header.model) == (path, "libtpu", MIXER)
        assert report.header.topology.devices == 4 and report.compile is not None and report.compile.fits
        # The model's own config keys and its rules, in front of base.yml's, reach the report.
        assert report.header.own_config["patch_size"] == 8
        rules = [name for name, _ in report.header.rules]
        assert rules[:6] == ["pixel", "patch", "hidden", "token_mlp", "channel_mlp", "classes"]
        assert "activation_batch" in rules
        assert report.batch["images"].model_dump() == {
            "shape": (4, 32, 32, 3), "dtype": "float32", "logical_axes": ("activation_batch", None, None, None),
            "partition_spec": ("fsdp",),
        }
        assert report.totals.unannotated.leaves == ()
    linen, nnx = reports["linen"], reports["nnx"]
    stem = linen.leaves["params/stem/kernel"]
    assert (stem.shape, stem.logical_axes, stem.partition_spec) == ((192, 64), ("pixel", "hidden"), (None, "fsdp"))
    # One parameter tree, one program: the two paths differ only in how leaves are named.
    names = canonical.defaults()
    for_path = {
        path: {names.canonical(p, x.role, path): (x.shape, x.logical_axes, x.partition_spec) for p, x in report.items()}
        for path, report in reports.items()
    }
    assert for_path["linen"] == for_path["nnx"] and len(for_path["linen"]) == 92
    assert linen.totals.parameters == nnx.totals.parameters == 48_938
    assert linen.compile.memory_per_device == nnx.compile.memory_per_device
    assert (linen.compile.per_step, linen.compile.collectives) == (nnx.compile.per_step, nnx.compile.collectives)


def test_mixer_compiles_on_the_mock_backend_with_model_config_from_the_command_line() -> None:
    code, out, err = run(
        "compile", "--model", MIXER, "-t", "v5p-8", "--backend", "mock", "--set", "num_blocks=3",
        "--set", "hidden_dim=128", "--format", "json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["header"]["backend"] == "mock" and data["compile"]["verdict"] == "fits"
    assert data["header"]["own_config"]["num_blocks"] == 3
    assert "params/block_2/channel_mixing/wi" in data["leaves"]
    assert data["leaves"]["params/stem/kernel"]["shape"] == [192, 128]


def test_mixer_diff_linen_nnx_is_clean() -> None:
    code, out, err = run("diff", "linen", "nnx", "--model", MIXER, "-t", "v5p-8", "--format", "json")
    assert code == 0, (out, err)
    result = json.loads(out)
    assert result["differences"] == 0 and result["verdict"] == "identical (apart from 1 explained note)"
    assert [(f["leaf"], f["explained"]) for f in result["findings"]] == [("step", True)]  # int32 vs uint32 step


def test_mixer_goldens_in_its_own_folder_pass_check() -> None:
    code, out, err = run("check", "--matrix", str(MIXER_DIR / "matrix.yml"), "--json")
    assert code == 0, (out, err)
    result = json.loads(out)
    cases = [(o["case"], o["path"], o["status"], Path(o["golden"]).resolve()) for o in result["outcomes"]]
    assert cases == [
        (f"mixer/{t}", p, "ok", MIXER_DIR / "golden" / t / p) for t in ("v5p-8", "v5p-128") for p in ("linen", "nnx")
    ]


def test_a_model_brings_its_optimizer_and_config_defaults() -> None:
    report = build_report(Request(topology="v5p-8", model="user_models:SGD", compile=False))
    assert report.batch["images"].shape == (8, 32, 32, 3)  # its per_device_batch_size=2 on 4 devices
    assert {leaf.role for leaf in report.leaves.values()} == {"param", "step"}  # SGD keeps no moments
    override = build_report(Request(topology="v5p-8", model="user_models:SGD", overrides=("per_device_batch_size=1",), compile=False))
    assert override.batch["images"].shape == (4, 32, 32, 3)  # the command line still wins


def test_a_model_config_key_that_aotcheck_also_reads_gets_the_value_given() -> None:
    cfg, _ = configure(Request(model="user_models:UNANNOTATED", overrides=("dtype=float16", "width=128")))
    assert (cfg.core.dtype, cfg.model.dtype, cfg.model.width) == ("float16", "float16", 128)


# Discovery: built-ins, installed entry points, module:attribute.


@pytest.fixture
def installed_mixer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `pip install examples/mixer` leaves on sys.path: a dist-info with the entry point."""
    project = tomllib.loads((MIXER_DIR / "pyproject.toml").read_text())["project"]
    dist = tmp_path / "aotcheck_mixer-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = project["entry-points"]["aotcheck.models"]
    (dist / "entry_points.txt").write_text("[aotcheck.models]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_models_lists_builtins_and_installed_models_with_their_source(installed_mixer: None) -> None:
    code, out, err = run("models")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert {"tiny", "llama2-7b", "mixtral-8x7b", "mixer"} <= set(rows)
    assert "built-in" in rows["tiny"] and "linen, nnx" in rows["tiny"]
    assert "entry point (aotcheck-mixer: aotcheck_mixer:MIXER)" in rows["mixer"]
    assert "MLP-Mixer image classifier" in rows["mixer"]


def test_a_broken_installed_model_is_listed_with_its_error_not_raised(installed_mixer: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken" / "broken_models-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-models\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[aotcheck.models]\nbroken = no_such_package_xyz:MODEL\n")
    monkeypatch.syspath_prepend(str(tmp_path / "broken"))
    code, out, err = run("models")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert {"tiny", "mixer", "broken"} <= set(rows)
    assert "cannot load" in rows["broken"] and "no_such_package_xyz" in out


def test_an_installed_model_is_found_by_name(installed_mixer: None) -> None:
    code, out, err = run("compile", "--model", "mixer", "-t", "v5p-8", "--no-compile", "--format", "json")
    assert code == 0, err
    header = json.loads(out)["header"]
    assert (header["model"], header["model_source"]) == ("mixer", "entry point (aotcheck-mixer: aotcheck_mixer:MIXER)")
    assert fails("compile", "--model", "mixr", "--no-compile", code=2).startswith("error: unknown model 'mixr'; did you mean mixer?")


def test_builtin_models_are_served_through_the_same_protocol() -> None:
    entry = resolve_model("llama2-7b")
    assert isinstance(entry.spec, aotcheck.ModelSpec) and entry.source == "built-in"
    assert entry.spec.paths() == ("linen", "nnx") and entry.spec.loss is aotcheck.next_token_loss


def test_importing_aotcheck_neither_imports_jax_nor_changes_the_environment() -> None:
    code = ("import os; before = dict(os.environ); import aotcheck, sys; "
            "print('jax' in sys.modules, dict(os.environ) == before, os.environ.get('JAX_PLATFORMS'))")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", "True", "None"]
    # The explicit call sets libtpu's environment and keeps what the user set.
    code = "import os; os.environ['TPU_MIN_LOG_LEVEL'] = '1'; import aotcheck; print(sorted(aotcheck.setup_libtpu_env()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "JAX_PLATFORMS" in out and "TPU_MIN_LOG_LEVEL" not in out
    for name in aotcheck.__all__:
        assert getattr(aotcheck, name) is not None
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", aotcheck.__version__)


# Errors: one line each, the documented exit code.


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nosuchpkg.mod:X",
         "error: model 'nosuchpkg.mod:X': cannot import module 'nosuchpkg.mod': ModuleNotFoundError: No module named 'nosuchpkg'"),
        ("user_models:BAD_BACH",
         "error: model 'user_models:BAD_BACH': module 'user_models' has no attribute 'BAD_BACH'; did you mean BAD_BATCH?"),
        ("user_models:SPEC",
         "error: model 'user_models:SPEC': module 'user_models' has no attribute 'SPEC'; its ModelSpecs: BAD_BATCH, "
         "BATCH_AXES, BATCH_DTYPE, BATCH_TUPLE, LINEN_ONLY, LINEN_RAISES, MIXER, NNX_ONLY, NNX_RAISES, RNG_STATE, SGD, UNANNOTATED, UNDECLARED_RNG"),
        ("user_models:NOT_A_SPEC",
         "error: model 'user_models:NOT_A_SPEC': user_models:NOT_A_SPEC is not an aotcheck.ModelSpec (it is int)"),
        ("user_models:", "error: model 'user_models:': give the attribute too, as user_models:NAME"),
        ("tinyy", "error: unknown model 'tinyy'; did you mean tiny? (`aotcheck models` lists them; or use package.module:attribute)"),
    ],
)
def test_a_model_that_cannot_be_found_is_a_usage_error(model: str, message: str) -> None:
    assert fails("compile", "--model", model, "--no-compile", code=2) == message


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("broken_models:M",
         "error: model 'broken_models:M': cannot import module 'broken_models': RuntimeError: cannot reach the weights server"),
        ("no_path_models:M",
         "error: model 'no_path_models:M': cannot import module 'no_path_models': ValueError: ModelSpec 'empty' gives "
         "neither linen nor nnx; give one factory or both"),
    ],
)
def test_a_model_module_whose_code_fails_on_import_is_a_build_failure(model: str, message: str) -> None:
    assert fails("compile", "--model", model, "--no-compile", code=3) == message


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_a_factory_that_raises_names_its_path(path: str) -> None:
    err = fails("compile", "--model", f"user_models:{path.upper()}_RAISES", f"--{'pure-nnx' if path == 'nnx' else 'linen'}",
                "-t", "v5p-8", "--no-compile", code=3)
    assert err == f"error: model 'mixer': the {path} factory raised ValueError: hidden_dim must be even"


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_a_batch_that_does_not_fit_the_model_is_named(path: str) -> None:
    err = fails("compile", "--model", "user_models:BAD_BATCH", f"--{'pure-nnx' if path == 'nnx' else 'linen'}",
                "-t", "v5p-8", "--no-compile", code=3)
    assert err.startswith(
        f"error: model 'mixer' ({path}): the loss failed on the batch (images float32[4, 16, 16, 3], labels int32[4]); "
        "does batch() fit the model? TypeError: dot_general requires contracting dimensions to have the same shape"
    )


def test_an_rng_stream_the_spec_does_not_name_gets_the_rngs_hint() -> None:
    err = fails("compile", "--model", "user_models:UNDECLARED_RNG", "-t", "v5p-8", "--no-compile", code=3)
    assert err.startswith(
        "error: model 'rng-state' (nnx): the model draws an RNG stream that ModelSpec(rngs=...) does not name "
        "(it names []); add it: KeyError: \"No RngStream named 'dropout' found in Rngs.\""
    ), err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("BATCH_AXES", "model 'mixer': batch 'labels': 2 logical axes ['activation_batch', None] for shape [4]; "
                       "give one name (or None) per dimension"),
        ("BATCH_DTYPE", "model 'mixer': batch 'labels': 'int33' is not a dtype"),
        ("BATCH_TUPLE", "model 'mixer': batch 'images' is a tuple; give an aotcheck.BatchField(shape, dtype, logical_axes)"),
    ],
)
def test_a_malformed_batch_description_is_named(model: str, message: str) -> None:
    err = fails("compile", "--model", f"user_models:{model}", "-t", "v5p-8", "--no-compile", code=3)
    assert err == f"error: {message}"


def test_a_model_with_one_path_compiles_on_it_and_names_the_missing_one() -> None:
    code, out, err = run("compile", "--model", "user_models:LINEN_ONLY", "-t", "v5p-8", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["compile"]["verdict"] == "fits"
    assert fails("compile", "--model", "user_models:LINEN_ONLY", "--pure-nnx", "--no-compile", code=2) == (
        "error: model 'mixer' has no nnx path: its ModelSpec gives linen (set ModelSpec.nnx)"
    )
    # An NNX-only model runs on NNX without being told; asking for Linen names what is missing.
    code, out, err = run("compile", "--model", "user_models:NNX_ONLY", "-t", "v5p-8", "--no-compile", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["header"]["path"] == "nnx"
    assert fails("compile", "--model", "user_models:NNX_ONLY", "--linen", "--no-compile", code=2) == (
        "error: model 'mixer' has no linen path: its ModelSpec gives nnx (set ModelSpec.linen)"
    )
    # `diff` needs both paths, and says which one is missing.
    assert fails("diff", "linen", "nnx", "--model", "user_models:LINEN_ONLY", "-t", "v5p-8", "--no-compile", code=2) == (
        "error: model 'mixer' has no nnx path: its ModelSpec gives linen (set ModelSpec.nnx)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("patch_sise=4", "error: config: unknown key 'patch_sise'; did you mean patch_size?"),
        ("hidden_dim=wide", "error: config: hidden_dim: Input should be a valid integer, unable to parse string as an integer (got 'wide')"),
        ("num_classes=0", "error: config: num_classes: Input should be greater than 0 (got 0)"),
        ("image_size=30", "error: config: image_size=30 is not a multiple of patch_size=8"),
    ],
)
def test_model_config_is_validated_like_aotchecks_own(override: str, message: str) -> None:
    assert fails("compile", "--model", MIXER, "--set", override, "--no-compile", code=2).startswith(message)


# Leaves without annotations are reported, not fatal.


def test_an_nnx_state_holding_rng_keys_passes_golden_update_then_check(tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yml"
    matrix.write_text('{golden_dir: golden, cases: [{model: "user_models:RNG_STATE", topology: v5p-8, paths: [nnx]}]}')
    code, out, err = run("golden", "update", "--matrix", str(matrix))
    assert code == 0, (out, err)
    dtypes = next((tmp_path / "golden").rglob("state_dtypes.json")).read_text()
    assert '"dtype": "key<fry>"' in dtypes  # the state really holds typed PRNG keys
    code, out, err = run("check", "--matrix", str(matrix))
    assert code == 0, (out, err)


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_unannotated_leaves_are_replicated_and_reported_with_their_bytes(path: str) -> None:
    args = ("compile", "--model", "user_models:UNANNOTATED", "-t", "v5p-8", f"--{'pure-nnx' if path == 'nnx' else 'linen'}")
    code, out, err = run(*args, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["compile"]["verdict"] == "fits"
    bias = "params/bias" if path == "linen" else "model/bias/value"
    assert data["leaves"][bias]["logical_axes"] is None and data["leaves"][bias]["partition_spec"] == []
    assert data["leaves"][bias]["bytes_per_device"] == 1024  # 256 float32, whole on every device
    unannotated = data["totals"]["unannotated"]
    assert len(unannotated["leaves"]) == 3 and bias in unannotated["leaves"]  # the bias and its two Adam moments
    assert unannotated["bytes_per_device"] == 3 * 1024
    code, out, err = run(*args)
    assert code == 0, err
    assert "unannotated (replicated on every device): 3 leaves, 3.00 KiB per device: " in out
    assert bias in out


def test_check_flags_a_large_leaf_that_loses_its_annotation(tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yml"
    case = '{name: biased, model: "user_models:UNANNOTATED", topology: v5p-8, compile: false, overrides: [width=8192%s]}'
    matrix.write_text(f"golden_dir: golden\ncases:\n  - {case % ''}\n")
    code, out, err = run("golden", "update", "--matrix", str(matrix), "--force")
    assert code == 0, (out, err)
    # The 64x8192 kernel (2 MiB) loses its logical axes: it is now whole on every device.
    matrix.write_text(f"golden_dir: golden\ncases:\n  - {case % ', annotate_kernel=false'}\n")
    code, out, err = run("check", "--matrix", str(matrix), "--json")
    assert code == 1, (out, err)
    outcomes = {o["path"]: o for o in json.loads(out)["outcomes"]}
    for path in ("linen", "nnx"):
        assert outcomes[path]["status"] == "changed"
        flagged = [f["leaf"] for f in outcomes[path]["findings"] if f["category"] == "newly replicated large leaf"]
        assert "param/kernel" in flagged, outcomes[path]["findings"]


# The documented snippets run verbatim.


def documented(title: str) -> str:
    """A section of README.md if it has it (the lead copies it there), else of docs/models.md."""
    for doc in (REPO / "README.md", REPO / "docs" / "models.md"):
        text = doc.read_text() if doc.exists() else ""
        found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        if found:
            return found.group(1)
    raise AssertionError(f"no '## {title}' section in README.md or docs/models.md")


def blocks(section: str, lang: str) -> list[str]:
    return [body for found, body in re.findall(r"^```(\w*)\n(.*?)^```$", section, re.S | re.M) if found == lang]


def run_documented_commands(section: str) -> None:
    lines = [line.split("#")[0] for body in blocks(section, "sh") for line in body.splitlines()]
    commands = [shlex.split(line) for line in lines if line.strip()]
    assert commands and all(args[0] == "aotcheck" for args in commands)
    for args in commands:
        exit_code, out, err = run(*args[1:])
        assert exit_code == 0, (args, out, err)
        assert "Traceback" not in out + err
        if args[1] == "compile":
            assert "fits:" in out and "unannotated" not in out, out


@pytest.fixture
def documented_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The snippet saved under the name the docs give, in the folder the commands run from."""
    section = documented("Your own model")
    module = re.search(r"Save this as `(\w+\.py)`", section)
    assert module is not None and len(blocks(section, "python")) == 1
    (tmp_path / module.group(1)).write_text(textwrap.dedent(blocks(section, "python")[0]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # aotcheck puts the working directory on it
    return tmp_path


def test_the_documented_model_runs_as_documented(documented_model: Path) -> None:
    run_documented_commands(documented("Your own model"))


def test_the_documented_python_use_runs_as_documented(
    documented_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(documented_model))
    (code,) = blocks(documented("From Python"), "python")
    exec(compile(code, "docs/models.md", "exec"), {})
    parameters, peak = re.fullmatch(r"(\d+) parameters; (\d+) bytes per device at peak\n", capsys.readouterr().out).groups()
    assert int(parameters) == 32 * 256 + 256 * 8 and int(peak) > 0


def test_the_documented_ci_guard_runs_as_documented(documented_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)  # golden update is refused in CI, as it should be
    section = documented("Guarding your model in CI")
    (documented_model / "matrix.yml").write_text(blocks(section, "yaml")[0])
    run_documented_commands(section)
    assert sorted(p.name for p in (documented_model / "golden" / "v5p-8").iterdir()) == ["linen", "nnx"]
