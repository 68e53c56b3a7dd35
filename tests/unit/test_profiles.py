"""The test profile chosen for a run and the suite's seed."""

from __future__ import annotations

import os

from tests.theory import support


def test_profile_reaches_suite_seed(request):
    # --hypothesis-profile and NCFLOW_PROFILE choose the same profile, and the
    # suite's seed reads it: ci draws seed 0, the others a seed per run. Chosen
    # by the option alone, the seed function read the variable's default (ci).
    profile = request.config._ncflow_profile
    assert os.environ["NCFLOW_PROFILE"] == profile
    if "NCFLOW_SEED" not in os.environ:
        assert (support.SUITE_SEED == 0) == (profile == "ci")
