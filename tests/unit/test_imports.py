"""What a command loads: the public names resolve lazily, and comparing saved reports loads no jax
(nor, once its YAML was parsed, PyYAML)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import aotcheck
from aotcheck import _golden, render

from ._reports import nnx_report, report


def test_every_public_name_resolves_to_its_modules_object():
    for package in (aotcheck, render):
        exports = package._EXPORTS
        expected = sorted([*exports.names, "__version__"]) if package is aotcheck else exports.names
        assert sorted(package.__all__) == expected
        for name in exports.names:
            module = importlib.import_module(exports.home_of[name])
            assert getattr(package, name) is getattr(module, name)
        assert set(package.__all__) <= set(dir(package))
    assert aotcheck.__version__


def test_diffing_saved_reports_and_goldens_loads_neither_jax_nor_the_build_pipeline(tmp_path):
    a, b = report(), nnx_report()
    (tmp_path / "a.json").write_text(a.to_json())
    _golden.write_golden(tmp_path / "gb", b)
    code = (
        "import json, sys\n"
        "from aotcheck._cli import app\n"
        "try:\n"
        f"    app([{'diff'!r}, {str(tmp_path / 'a.json')!r}, {str(tmp_path / 'gb')!r}])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'numpy', 'flax')\n"
        "                or m in ('aotcheck._pipeline', 'aotcheck._program', 'aotcheck._cost', 'yaml'))\n"
        "print(json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    env = {**os.environ, "AOTCHECK_CACHE_DIR": str(tmp_path / "cache")}
    for loaded in (["yaml"], []):  # configs/canonical.yml is parsed once, then read from the cache
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        result = json.loads(run.stdout.splitlines()[-1])
        assert "A: " in run.stdout and result["code"] in (0, 1)
        assert result["loaded"] == loaded
