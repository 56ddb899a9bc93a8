from tessera_example_balancer import RendezvousBalancer

from tessera.core.plugins import Balancer
from tessera.testing.conformance.balancers import HashingBalancerConformance


class TestRendezvousBalancer(HashingBalancerConformance):
    entry_point = "rendezvous"
    weighted = True

    def make_balancer(self) -> Balancer:
        return RendezvousBalancer()
