"""Shared test settings.

Hypothesis runs derandomized by default so that CI and every developer see
the same examples (a failure reproduces by rerunning).  Set
HYPOTHESIS_PROFILE=explore to search with fresh random examples.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
