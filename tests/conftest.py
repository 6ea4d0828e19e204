"""Hypothesis profiles. `default` is hypothesis's own (100 examples as the unit that test files
scale their counts by); `ci` is what CI runs (CI=true selects it); `long` is for a soak run:

    python -m pytest tests --hypothesis-profile=long

(hypothesis's pytest plugin applies --hypothesis-profile after this file is loaded, so the
option always wins.)"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile("long", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("quick", max_examples=20, deadline=None,
                          suppress_health_check=_SLOW_OK)

if os.environ.get("CI"):
    settings.load_profile("ci")
