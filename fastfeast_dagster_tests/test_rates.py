"""The rate checks' bound (checks/rates.py): what it promises, checked against the binomial law."""

from __future__ import annotations

import pytest
from scipy.stats import binom

from fastfeast_dagster.checks.rates import rate_evidence, rate_lower_bound


@pytest.mark.parametrize(("events", "trials"), [(1, 3), (3, 11), (4, 11), (7, 11), (70, 1000)])
def test_the_bound_is_the_rate_at_which_that_many_events_become_unlikely(
    events: int, trials: int
) -> None:
    bound = rate_lower_bound(events, trials, 0.99)
    # Computed from the beta quantile; its definition is the binomial tail.
    assert binom.sf(events - 1, trials, bound) == pytest.approx(0.01, rel=1e-6)
    assert bound < events / trials


@pytest.mark.parametrize("trials", [5, 11, 17, 100, 1000])
@pytest.mark.parametrize("confidence", [0.99, 0.999])
def test_a_healthy_source_fails_the_check_at_most_as_often_as_the_confidence_allows(
    trials: int, confidence: float
) -> None:
    # A source whose rows go bad at exactly the threshold: how often does a partition fail?
    threshold = 0.05
    failing = [
        k for k in range(trials + 1) if rate_evidence(k, trials, confidence).above(threshold)
    ]
    assert sum(binom.pmf(k, trials, threshold) for k in failing) <= 1 - confidence
    # The raw share, which the check used to compare, fails such partitions far more often.
    raw = [k for k in range(trials + 1) if k / trials > threshold]
    assert sum(binom.pmf(k, trials, threshold) for k in raw) > 0.08


def test_small_partitions_need_more_bad_rows_than_large_ones_to_fail() -> None:
    # At the contract's 99.9 %, as config/pipeline.yaml and the README state it.
    verdicts = {
        (events, trials): (
            rate_evidence(events, trials, 0.999).above(0.05),
            rate_evidence(events, trials, 0.999).above(0.25),
        )
        for events, trials in [(4, 11), (5, 11), (8, 11), (9, 11), (70, 1000), (80, 1000)]
    }
    assert verdicts == {
        (4, 11): (False, False),  # 36 % of a small hour: not yet evidence
        (5, 11): (True, False),
        (8, 11): (True, False),
        (9, 11): (True, True),
        (70, 1000): (False, False),  # 7 %: within what a 5 % source does now and then
        (80, 1000): (True, False),  # 8 %: above
    }


def test_no_rows_or_no_events_bound_the_rate_at_zero() -> None:
    assert rate_evidence(0, 0, 0.99).lower_bound == 0.0
    assert rate_evidence(0, 500, 0.99).lower_bound == 0.0
    assert rate_evidence(0, 0, 0.99).describe("quarantined", 0.05, "warn rate") == (
        "no rows read, nothing quarantined"
    )
    with pytest.raises(ValueError):
        rate_lower_bound(3, 2, 0.99)
