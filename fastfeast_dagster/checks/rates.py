"""When a share of bad rows is evidence: a bound on the rate, not the raw share.

A partition's quarantined (or repaired) rows are a sample of how its source behaves. Three bad
rows in an hour of eleven tickets are a 27 % share, yet a source that goes wrong 5 % of the time
yields three or more of eleven in 1.5 % of such hours: a threshold on the raw share fails
healthy small partitions every day, while a large partition slightly over the threshold is real
news. So the rate checks judge the one-sided Clopper-Pearson lower confidence bound of the rate:
a check fails only when, at the contract's confidence (99.9 %), the partition's rate is above
the threshold. On a large partition the bound is close to the share and the threshold acts as
before; on eleven rows it takes five bad ones to warn at 5 %, and nine to fail at 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateEvidence:
    """`events` of `trials` rows, and what they show about the rate behind them."""

    events: int
    trials: int
    confidence: float
    lower_bound: float  # the rate is at least this, at `confidence`

    @property
    def share(self) -> float:
        return self.events / self.trials if self.trials else 0.0

    def above(self, threshold: float) -> bool:
        """Whether the rate is above `threshold` at this confidence."""
        return self.lower_bound > threshold

    def describe(self, what: str, threshold: float, name: str) -> str:
        """One sentence for the UI: the count, the share, the bound and the verdict."""
        if not self.trials:
            return f"no rows read, nothing {what}"
        verdict = "above" if self.above(threshold) else "not above"
        return (
            f"{self.events} of {self.trials} rows {what} ({self.share:.1%}); at"
            f" {self.confidence:.1%} confidence the rate is at least {self.lower_bound:.1%},"
            f" {verdict} the {threshold:.0%} {name}"
        )


def rate_evidence(events: int, trials: int, confidence: float) -> RateEvidence:
    return RateEvidence(events, trials, confidence, rate_lower_bound(events, trials, confidence))


def rate_lower_bound(events: int, trials: int, confidence: float) -> float:
    """The one-sided Clopper-Pearson lower bound of a binomial rate seen as `events` of `trials`:
    the smallest rate p with P(X >= events | trials, p) >= 1 - confidence."""
    if not 0 <= events <= trials:
        raise ValueError(f"{events} events of {trials} trials")
    if events == 0:
        return 0.0
    # Imported here: scipy.stats costs a second, which code servers and sensors must not pay
    # (the check step has usually loaded it already, through Great Expectations).
    from scipy.stats import beta

    return float(beta.ppf(1 - confidence, events, trials - events + 1))
