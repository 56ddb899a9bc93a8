"""Plugins that import fine but are not valid balancers."""


class ChooseBalancer:
    """Has `choose` where the Balancer protocol wants `pick`."""

    def choose(self, instances: object) -> object:
        return instances


class AsyncPickBalancer:
    """Has `pick`, but async where the Balancer protocol's is synchronous."""

    async def pick(self, instances: object, key: object) -> object:
        return instances


NOT_CALLABLE = 42
