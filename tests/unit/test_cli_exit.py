"""The command's end: it skips the interpreter's teardown, yet keeps the exit code, the buffered
output and the exit handlers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys
{imports}
from aotcheck._cli import _exit
atexit.register(lambda: print("handler ran", file=sys.stderr))
for _ in range(1000):  # the last few KiB are still in the buffer when _exit starts
    sys.stdout.write("x" * 100)
_exit({code})
"""


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output buffered, as usual


@pytest.mark.parametrize(("code", "imports"), [(0, "import jax"), (1, "import jax"), (4, "import json")])
def test_the_exit_code_output_and_exit_handlers_survive_the_quick_exit(code, imports):
    run = subprocess.run([sys.executable, "-c", SCRIPT.format(code=code, imports=imports)], capture_output=True,
                         text=True, env=ENV)
    assert run.returncode == code
    assert run.stdout == "x" * 100000
    assert run.stderr.strip().splitlines()[-1] == "handler ran"


def test_a_live_thread_gets_the_ordinary_exit():
    script = SCRIPT.replace("_exit(", "import threading, time\n"
                            "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n_exit(")
    run = subprocess.run([sys.executable, "-c", script.format(code=3, imports="import jax")], capture_output=True,
                         text=True, env=ENV)
    assert run.returncode == 3 and run.stdout.endswith("thread done\n")
