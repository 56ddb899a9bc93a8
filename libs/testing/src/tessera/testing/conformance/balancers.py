"""Conformance kit for balancer plugins (`tessera.balancers`, `tessera.core.plugins.Balancer`).

Subclass the kit class that matches what the balancer promises, in a test module; pytest then
runs every check of the contract against it:

- `BalancerConformance`: every balancer;
- `HashingBalancerConformance`: adds the consistent-hashing checks (ring hash, Maglev);
- `LoadAwareBalancerConformance`: adds the `complete` checks of a `LoadAwareBalancer`.

::

    from tessera.testing.conformance.balancers import BalancerConformance

    class TestMyBalancer(BalancerConformance):
        entry_point = "my_balancer"    # must load through the tessera.balancers group
        weighted = True                # picks follow weights (else equal shares)

        def make_balancer(self):
            return MyBalancer()

The checks and their tolerances:

- every pick is one of the candidates of that call, also when the candidate set changes
  between calls (a new object, or a new object with equal contents) and the input is never
  mutated; an empty candidate set raises `UnavailableError`;
- shares over 20,000 picks (distinct keys for hashing balancers) are within `tolerance`
  (5 percentage points by default) of `weight / sum(weights)`, or of equal shares when the
  balancer is not `weighted`;
- hashing balancers map a key to the same endpoint on every call, and when one of ten
  endpoints leaves or an eleventh joins, move at most twice the share that endpoint owns plus
  `tolerance` of 10,000 keys;
- four threads picking at once, from two alternating candidate sets, never get an error or an
  endpoint outside the set they passed;
- a `LoadAwareBalancer` accepts `complete` for every endpoint it returned, and for endpoints it
  does not know, without raising.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest

from tessera.core import UnavailableError
from tessera.core.plugins import BALANCERS, Balancer, Endpoint, LoadAwareBalancer, load_plugins

PICKS = 20_000
KEYS = 10_000


def endpoints(
    count: int, *, weights: Sequence[float] | None = None, prefix: str = "e"
) -> tuple[Endpoint, ...]:
    """Build `count` endpoints named `<prefix>0`, `<prefix>1`, ... with the given weights."""
    chosen = weights or [1.0] * count
    return tuple(
        Endpoint(id=f"{prefix}{n}", address=f"10.0.0.{n % 250 + 1}:{8000 + n}", weight=chosen[n])
        for n in range(count)
    )


def keys(count: int, *, salt: str = "") -> list[bytes]:
    """Build distinct affinity keys."""
    return [f"user-{salt}{n}".encode() for n in range(count)]


class BalancerConformance:
    """The checks of the `Balancer` contract; subclass it and set the attributes below.

    Attributes:
        entry_point: Name the plugin is registered under in `tessera.balancers` (required).
        weighted: Whether picks follow weights (else equal shares are expected).
        consistent_hashing: Whether picks are keyed (set by `HashingBalancerConformance`).
        tolerance: Allowed deviation of a share, as a fraction (0.05 is 5 points).

    """

    entry_point: str = ""
    weighted: bool = False
    consistent_hashing: bool = False
    tolerance: float = 0.05

    def make_balancer(self) -> Balancer:
        """Return a new balancer under test."""
        raise NotImplementedError("subclasses return the balancer under test")

    def _pick_many(
        self, balancer: Balancer, candidates: Sequence[Endpoint], count: int
    ) -> Counter[str]:
        load_aware = isinstance(balancer, LoadAwareBalancer)
        picked: Counter[str] = Counter()
        keyed = keys(count) if self.consistent_hashing else [None] * count
        for key in keyed:
            endpoint = balancer.pick(candidates, key)
            picked[endpoint.id] += 1
            if load_aware:
                balancer.complete(endpoint)  # type: ignore[attr-defined]  # checked above
        return picked

    def test_registered_under_its_entry_point(self) -> None:
        """Check the plugin loads through its entry point and builds the same class."""
        assert self.entry_point, "set entry_point to the name the plugin is registered under"
        plugin = load_plugins(BALANCERS).get(self.entry_point)
        assert type(plugin.create()) is type(self.make_balancer())

    def test_satisfies_the_protocol(self) -> None:
        """Check the balancer has every method of the Protocol, sync as declared."""
        balancer = self.make_balancer()
        assert isinstance(balancer, Balancer)
        assert BALANCERS.violations(balancer) == []

    @pytest.mark.parametrize("count", [1, 2, 7])
    def test_picks_only_candidates_and_never_mutates_them(self, count: int) -> None:
        """Check every pick is a candidate and the candidates are left unchanged."""
        balancer = self.make_balancer()
        candidates = list(endpoints(count))
        before = list(candidates)
        for key in [None, *keys(50)]:
            assert balancer.pick(candidates, key) in before
        assert candidates == before

    def test_follows_a_changed_candidate_set(self) -> None:
        """Check picks follow a new candidate set, and an old one passed again."""
        balancer = self.make_balancer()
        first = endpoints(5)
        for key in keys(100):
            balancer.pick(first, key)
        second = endpoints(3, prefix="other")
        assert {balancer.pick(second, key).id for key in keys(300)} <= {e.id for e in second}
        # A new object with the contents of an earlier set must be served from those contents.
        again = tuple(first)
        assert {balancer.pick(again, key).id for key in keys(300)} <= {e.id for e in first}

    def test_empty_candidates_raise_unavailable(self) -> None:
        """Check an empty candidate set raises UnavailableError."""
        with pytest.raises(UnavailableError):
            self.make_balancer().pick((), b"key")

    @pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.5, 5.0]])
    def test_shares_follow_weights(self, weights: list[float]) -> None:
        """Check shares of many picks are within `tolerance` of the expected ones."""
        candidates = endpoints(len(weights), weights=weights)
        picked = self._pick_many(self.make_balancer(), candidates, PICKS)
        total = sum(weights)
        for endpoint in candidates:
            expected = endpoint.weight / total if self.weighted else 1 / len(candidates)
            share = picked[endpoint.id] / PICKS
            assert abs(share - expected) <= self.tolerance, (endpoint.id, share, expected)

    def test_concurrent_picks_stay_within_the_candidates_passed(self) -> None:
        """Check four threads picking at once only get candidates they passed."""
        balancer = self.make_balancer()
        sets = (endpoints(4), endpoints(6, prefix="b"))
        allowed = [{e.id for e in s} for s in sets]
        failures: list[BaseException | str] = []
        start = threading.Barrier(4)

        def worker(seed: int) -> None:
            start.wait()
            try:
                for n, key in enumerate(keys(2000, salt=str(seed))):
                    which = (n + seed) % 2
                    picked = balancer.pick(sets[which], key)
                    if picked.id not in allowed[which]:
                        failures.append(f"{picked.id} is not in set {which}")
                    if isinstance(balancer, LoadAwareBalancer):
                        balancer.complete(picked)
            except BaseException as error:  # any error in a thread is a failed check
                failures.append(error)

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == []


class HashingBalancerConformance(BalancerConformance):
    """`BalancerConformance` plus the checks of a consistent-hashing balancer."""

    consistent_hashing = True

    def test_equal_keys_map_to_the_same_endpoint(self) -> None:
        """Check a key maps to one endpoint, in this balancer and a fresh one."""
        balancer = self.make_balancer()
        candidates = endpoints(8)
        first = [balancer.pick(candidates, key).id for key in keys(1000)]
        fresh = self.make_balancer()  # another client with the same candidates must agree
        assert [fresh.pick(tuple(candidates), key).id for key in keys(1000)] == first

    @pytest.mark.parametrize("change", ["join", "leave"])
    def test_one_endpoint_joining_or_leaving_moves_a_bounded_share_of_keys(
        self, change: str
    ) -> None:
        """Check one endpoint joining or leaving moves a bounded share of keys."""
        ten = endpoints(10)
        changed = endpoints(11) if change == "join" else ten[:9]
        owned_share = 1 / max(len(ten), len(changed))
        balancer = self.make_balancer()
        before = [balancer.pick(ten, key).id for key in keys(KEYS)]
        after = [balancer.pick(changed, key).id for key in keys(KEYS)]
        moved = sum(a != b for a, b in zip(before, after, strict=True)) / KEYS
        assert moved <= 2 * owned_share + self.tolerance, moved


class LoadAwareBalancerConformance(BalancerConformance):
    """`BalancerConformance` plus the checks of a `LoadAwareBalancer`."""

    def test_complete_accepts_known_and_unknown_endpoints(self) -> None:
        """Check `complete` accepts picked, repeated and unknown endpoints."""
        balancer = self.make_balancer()
        assert isinstance(balancer, LoadAwareBalancer)
        candidates = endpoints(3)
        picked = balancer.pick(candidates, None)
        balancer.complete(picked)
        balancer.complete(picked)  # more completions than picks must not go negative or raise
        balancer.complete(Endpoint(id="unknown", address="10.9.9.9:1"))
        assert balancer.pick(candidates, None) in candidates
