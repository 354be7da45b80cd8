"""Hypothesis profiles for the fuzzing suite.

`ci` (the default): a few dozen examples per input surface, a few hundred in all, so the suite
runs in about a minute. `fuzz` (`nox -s fuzz`, or HYPOTHESIS_PROFILE=fuzz): 5,000 per surface,
or AOTCHECK_FUZZ_EXAMPLES per surface when set (a long run cut to the time there is).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "derandomize": False, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large, HealthCheck.filter_too_much]}
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("fuzz", max_examples=int(os.environ.get("AOTCHECK_FUZZ_EXAMPLES", "5000")), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
