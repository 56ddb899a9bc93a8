from tessera.balancers import (
    TABLE_SIZE,
    LeastRequest,
    Maglev,
    RingHash,
    RoundRobin,
    WeightedRandom,
    WeightedRoundRobin,
)
from tessera.balancers._maglev import build_table
from tessera.core.plugins import Balancer
from tessera.testing.conformance.balancers import (
    BalancerConformance,
    HashingBalancerConformance,
    LoadAwareBalancerConformance,
    endpoints,
)


class TestRoundRobin(BalancerConformance):
    entry_point = "round_robin"

    def make_balancer(self) -> Balancer:
        return RoundRobin()


class TestRandom(BalancerConformance):
    entry_point = "random"
    weighted = True

    def make_balancer(self) -> Balancer:
        return WeightedRandom()


class TestWeightedRoundRobin(BalancerConformance):
    entry_point = "weighted_round_robin"
    weighted = True

    def make_balancer(self) -> Balancer:
        return WeightedRoundRobin()


class TestLeastRequest(LoadAwareBalancerConformance):
    entry_point = "least_request"
    weighted = True

    def make_balancer(self) -> Balancer:
        return LeastRequest()


class TestRingHash(HashingBalancerConformance):
    entry_point = "ring_hash"
    weighted = True

    def make_balancer(self) -> Balancer:
        return RingHash()


class TestMaglev(HashingBalancerConformance):
    entry_point = "maglev"
    weighted = True

    def make_balancer(self) -> Balancer:
        return Maglev()


def test_weighted_round_robin_interleaves_heavy_endpoints() -> None:
    heavy, light_a, light_b = endpoints(3, weights=[5.0, 1.0, 1.0])
    candidates = (heavy, light_a, light_b)
    balancer = WeightedRoundRobin()
    period = [balancer.pick(candidates, None).id for _ in range(7 * 100)]
    runs = max(len(run) for run in "".join("h" if i == "e0" else "." for i in period).split("."))
    # A plain weighted round robin sends the heavy endpoint its whole share in one burst (here
    # 714 of each 1,000 picks); the smooth schedule never more than its weight ratio in a row.
    assert runs <= 5


def test_least_request_steers_away_from_endpoints_with_calls_in_flight() -> None:
    candidates = endpoints(2)
    balancer = LeastRequest()
    held = [balancer.pick(candidates, None) for _ in range(100)]  # never completed
    counts = {e.id: sum(h.id == e.id for h in held) for e in candidates}
    assert abs(counts["e0"] - counts["e1"]) <= 10
    for endpoint in held:
        balancer.complete(endpoint)


def test_maglev_table_is_filled_by_every_endpoint_in_proportion() -> None:
    candidates = endpoints(3, weights=[1.0, 1.0, 2.0])
    table = build_table(candidates)
    assert len(table) == TABLE_SIZE
    share = sum(e.id == "e2" for e in table) / TABLE_SIZE
    assert abs(share - 0.5) < 0.01
