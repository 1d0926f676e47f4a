"""Optional test dependencies: the tests that need one skip cleanly where it is missing.

``from tests.optional import given, settings, st, assume, HealthCheck`` gives Hypothesis where it
is installed (``pip install -e ".[test]"`` brings it), and otherwise stand-ins under which every
``@given`` test is skipped with the reason, so a machine with only numpy and pytest (a GPU box
without network, say) still runs the rest of the suite.
"""

from __future__ import annotations

from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
    HAVE_HYPOTHESIS = True
except ImportError:
    HAVE_HYPOTHESIS = False

    class _Absent:
        """Absorbs any strategy or setting built at import time (st.integers(1, 4), HealthCheck.too_slow)."""

        def __getattr__(self, name: str) -> _Absent:
            return self

        def __call__(self, *args: Any, **kwargs: Any) -> _Absent:
            return self

    st = HealthCheck = _Absent()

    def assume(condition: Any) -> bool:
        return True

    def given(*args: Any, **kwargs: Any):
        return pytest.mark.skip(reason="needs hypothesis: pip install hypothesis")

    class settings:  # noqa: N801 - hypothesis's name
        """``@settings(...)`` leaves the test as it is; profiles are ignored."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, test: Any) -> Any:
            return test

        @staticmethod
        def register_profile(*args: Any, **kwargs: Any) -> None:
            pass

        @staticmethod
        def load_profile(*args: Any, **kwargs: Any) -> None:
            pass

__all__ = ["HAVE_HYPOTHESIS", "HealthCheck", "assume", "given", "settings", "st"]
