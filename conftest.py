"""Test-session set-up: Hypothesis profiles, one thread per worker, verdict report.

Profiles (chosen with ``NCFLOW_PROFILE`` or ``--hypothesis-profile``; default
``ci``). Hypothesis loads its own built-in ``ci`` profile whenever the
environment variable ``CI`` is set, so the project's profile of that name is
registered here and loaded explicitly, and CI runs what the README says:

- ``dev``: 5 examples per property, random;
- ``ci``: 25 examples per property, derandomised (the same examples on every
  run and every worker), no example database;
- ``thorough``: 500 examples per property, random.

Deadlines are off for all of them: a property trains a network, and under
``-n auto`` any wall-clock deadline is flaky. Every verdict a property
produces is collected; at the end of the run a table gives, per claim, the
examples tried, the PASS / FAIL / INCONCLUSIVE counts, the worst margin and the
counterexample files, and the run fails if more than a fifth of a claim's
examples were INCONCLUSIVE (a run that verified little must not pass).
"""

from __future__ import annotations

import json
import os

# One BLAS/OpenMP thread per process, set before numpy is imported: several
# xdist workers each running a full thread pool oversubscribe the cores, and
# the order of reductions (hence the last bits of a long flow) would depend on
# the thread count.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

PROFILES = {
    "dev": dict(max_examples=5),
    "ci": dict(max_examples=25, derandomize=True, database=None, print_blob=True),
    "thorough": dict(max_examples=500),
}
COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
for _profile, _options in PROFILES.items():
    settings.register_profile(_profile, **COMMON, **_options)

# A claim whose examples are more often INCONCLUSIVE than this fails the run.
MAX_INCONCLUSIVE_SHARE = 0.2


def pytest_addoption(parser):
    group = parser.getgroup("ncflow")
    group.addoption(
        "--counterexamples",
        default=os.environ.get("NCFLOW_COUNTEREXAMPLES", "counterexamples"),
        help="directory where FAIL records are written (default: counterexamples)",
    )


def pytest_configure(config):
    profile = os.environ.get("NCFLOW_PROFILE")
    option = config.getoption("--hypothesis-profile", default=None)
    name = option or profile or "ci"
    if name not in PROFILES:
        raise pytest.UsageError(
            f"NCFLOW_PROFILE={name!r} is not a profile; use one of "
            f"{', '.join(PROFILES)}"
        )
    settings.load_profile(name)
    config._ncflow_profile = name
    # The suite's seed (tests/theory/support.py) follows the profile. Chosen by
    # --hypothesis-profile alone, it read the variable's default, ci, and drew
    # the same examples on every thorough run.
    os.environ["NCFLOW_PROFILE"] = name
    config._ncflow_verdicts = []

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    config._ncflow_threads = threadpool_limits(limits=1)

    # Hypothesis mixes literals of the loaded modules into its draws, so the ci
    # examples would change with every edit of the code and with the set of
    # test files collected. Without them the draws depend on the seed alone.
    from theory_checks.explorations import without_local_constants

    config._ncflow_constants = without_local_constants()
    config._ncflow_constants.__enter__()


def pytest_unconfigure(config):
    constants = getattr(config, "_ncflow_constants", None)
    if constants is not None:
        constants.__exit__(None, None, None)


def record_verdict(config, claim: str, verdict, record: str | None = None) -> None:
    """Keep one verdict for the end-of-run table (called by the properties)."""
    config._ncflow_verdicts.append(
        {
            "claim": claim,
            "outcome": verdict.outcome.value,
            "margin": verdict.margin,
            "record": record,
            "exploration": bool(verdict.details.get("exploration", False)),
        }
    )


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    verdicts = list(config._ncflow_verdicts)
    if hasattr(config, "workeroutput"):
        # An xdist worker: hand the verdicts to the controller.
        config.workeroutput["ncflow_verdicts"] = json.dumps(verdicts)
        return
    verdicts += getattr(config, "_ncflow_worker_verdicts", [])
    config._ncflow_all_verdicts = verdicts
    failing = _inconclusive_claims(verdicts)
    if failing and session.exitstatus == 0:
        session.exitstatus = 1
    config._ncflow_inconclusive_failures = failing


# optionalhook: the hook belongs to pytest-xdist, and a run with ``-p no:xdist``
# must still load this file.
@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    data = getattr(node, "workeroutput", {}).get("ncflow_verdicts")
    if data:
        config = node.config
        if not hasattr(config, "_ncflow_worker_verdicts"):
            config._ncflow_worker_verdicts = []
        config._ncflow_worker_verdicts.extend(json.loads(data))


def _summary(verdicts: list) -> dict:
    """Rows of the end-of-run table, keyed by ``(claim, exploration)``.

    One id may be a claim in one family and an exploration in another: C3 is
    proved for K >= 3 and only explored for binary problems. In one shared row,
    the first verdict to arrive would decide whether the row's INCONCLUSIVE
    share can fail the run, so the flag is part of the key.
    """
    table: dict = {}
    for item in verdicts:
        row = table.setdefault(
            (item["claim"], item["exploration"]),
            {
                "tried": 0,
                "PASS": 0,
                "FAIL": 0,
                "INCONCLUSIVE": 0,
                "worst": None,
                "records": set(),
                "exploration": item["exploration"],
            },
        )
        row["tried"] += 1
        row[item["outcome"]] += 1
        margin = item["margin"]
        if margin is not None and (row["worst"] is None or margin > row["worst"]):
            row["worst"] = margin
        if item["record"]:
            row["records"].add(item["record"])
    return table


def _inconclusive_claims(verdicts: list) -> list:
    failing = []
    for (claim, exploration), row in _summary(verdicts).items():
        if exploration:
            continue
        share = row["INCONCLUSIVE"] / row["tried"]
        if share > MAX_INCONCLUSIVE_SHARE:
            failing.append((claim, row["INCONCLUSIVE"], row["tried"]))
    return failing


def _claim_order(claim: str) -> tuple:
    return (claim[0], int(claim[1:]) if claim[1:].isdigit() else 0, claim)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    verdicts = getattr(config, "_ncflow_all_verdicts", None)
    if not verdicts:
        return
    table = _summary(verdicts)
    write = terminalreporter.write_line
    terminalreporter.section(f"ncflow verdicts (profile {config._ncflow_profile})")
    write(
        f"{'claim':<7}{'tried':>6}{'PASS':>6}{'FAIL':>6}{'INCONC':>8}  "
        f"{'worst margin':>12}  counterexamples"
    )
    for key in sorted(table, key=lambda key: (_claim_order(key[0]), key[1])):
        claim, row = key[0], table[key]
        worst = "-" if row["worst"] is None else f"{row['worst']:.3g}"
        records = ", ".join(sorted(row["records"])) or "-"
        note = " (exploration)" if row["exploration"] else ""
        write(
            f"{claim:<7}{row['tried']:>6}{row['PASS']:>6}{row['FAIL']:>6}"
            f"{row['INCONCLUSIVE']:>8}  {worst:>12}  {records}{note}"
        )
    for claim, count, tried in getattr(config, "_ncflow_inconclusive_failures", []):
        write(
            f"FAILED: {claim} was INCONCLUSIVE on {count} of {tried} examples, more "
            f"than {MAX_INCONCLUSIVE_SHARE:.0%}: the run verified too little",
            red=True,
        )
