"""A valid balancer plugin and a function factory that returns something that is not one."""

from collections.abc import Sequence

from tessera.core.plugins import Endpoint


class FirstBalancer:
    def pick(self, instances: Sequence[Endpoint], key: bytes | None) -> Endpoint:
        return instances[0]


def make_not_a_balancer() -> object:
    return "not a balancer"
