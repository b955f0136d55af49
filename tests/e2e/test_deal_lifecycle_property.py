"""The deal-lifecycle property test: random sequences per deal (won, lines added, removed, repriced,
quantity changes, reopened, lost, won again, deleted, at random days of the billing calendar, payments
succeeded, failed after success, refunded) on the shipped routes against the Salesforce and Lago
sandboxes, with an oracle of what finance expects billed per line and period to the minor unit, which
deals are dead letters and why, and what each Opportunity shows (lead2cash/testing/deal_lifecycle.py).

Fast by design: every sequence is a deal of its own account, so one hub run per calendar tick advances
all of them (``run --until-idle``), rather than waiting for each deal to settle. ``bench/deal_lifecycle.py``
runs 5,000 sequences the same way.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lead2cash.demo.environment import LeadToCash
from lead2cash.testing.deal_lifecycle import OPS, PRICES, RECURRING, DealPlan, Op, first_of_next_month, run

SEQUENCES = int(os.environ.get("LEAD2CASH_LIFECYCLE_SEQUENCES", "100"))
TICKS = 11

plans = st.builds(
    DealPlan,
    lines=st.lists(
        st.tuples(st.sampled_from(RECURRING), st.sampled_from(PRICES), st.integers(1, 3)),
        min_size=1,
        max_size=2,
    ).map(tuple),
    one_time=st.booleans(),
    # Most deals are won early (what follows is then billed); the rest of the operations at random ticks.
    ops=st.tuples(
        st.builds(Op, st.integers(0, 4), st.just("won"), st.just(0)),
        st.lists(
            st.builds(Op, st.integers(0, TICKS - 1), st.sampled_from(OPS), st.integers(0, 9)), max_size=7
        ),
    ).map(lambda t: (t[0], *t[1])),
)


@pytest.mark.slow
@pytest.mark.timeout(900)
@settings(
    # The first example Hypothesis tries is the simplest (every deal won once, nothing else): the second is
    # the random batch. No shrinking: each example is a whole hub run; a failure names each bad deal's own
    # sequence, the model's expectation and what Lago billed.
    max_examples=2,
    phases=[Phase.generate],
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(sequences=st.lists(plans, min_size=SEQUENCES, max_size=SEQUENCES))
def test_random_deal_lives_bill_what_finance_expects(sequences: list[DealPlan], tmp_path: Path) -> None:
    # A fresh hub state per example: the sandboxes start over and hand out the same ids again.
    env = LeadToCash(tmp_path / uuid.uuid4().hex, seed=31, seed_size=4)
    try:
        today = datetime.now(UTC).date()
        d0 = first_of_next_month(first_of_next_month(today)) + timedelta(days=3)

        async def scenario():  # type: ignore[no-untyped-def]
            try:
                return await run(env, sequences, d0)
            finally:
                await env.hub.aclose_systems()

        outcome = asyncio.run(scenario())
    finally:
        env.close()
    print(outcome)
    assert outcome.deals == SEQUENCES
    assert not outcome.problems, "\n".join(outcome.problems[:20])
    assert outcome.fees_checked > 0
