from __future__ import annotations

from tessera.core.etcd import EtcdClient
from tessera.core.plugins import RULE_ENGINES, PluginSet, RuleEngine, load_plugins
from tessera.core.server import ServiceBinding
from tessera.governance._contract_rpcs import ContractRpcs
from tessera.governance._contract_store import ContractStore
from tessera.governance._model_rpcs import ModelRpcs
from tessera.governance._model_store import ModelStore
from tessera.governance._rule_rpcs import RuleRpcs
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._scan_requests import ScanRequests
from tessera.governance._scan_rpcs import ScanRpcs
from tessera.governance._scan_schedules import ScheduleStore
from tessera.governance._scan_store import ScanStore
from tessera.governance._settings import GovernanceSettings
from tessera.governance._standard_rpcs import StandardRpcs
from tessera.governance._standard_store import StandardStore
from tessera.proto.governance.v1 import governance_pb2_grpc

#: Full proto name of the service.
GOVERNANCE_SERVICE = "tessera.governance.v1.Governance"


class GovernanceServicer(
    ContractRpcs,
    StandardRpcs,
    ModelRpcs,
    RuleRpcs,
    ScanRpcs,
    governance_pb2_grpc.GovernanceServicer,
):
    """`tessera.governance.v1.Governance`: contracts, standards, entity model, rules and scans.

    Each part is its own class: `ContractRpcs`, `StandardRpcs`, `ModelRpcs`, `RuleRpcs`,
    `ScanRpcs`. Scans are sent to Celery queue `governance` through `settings.redis_url`.

    Args:
        etcd: A connected client, owned by the caller.
        settings: The service's settings.
        engines: The rule engines; every installed `tessera.rule_engines` plugin when None.

    Use from one event loop.

    """

    def __init__(
        self,
        etcd: EtcdClient,
        settings: GovernanceSettings,
        engines: PluginSet[RuleEngine] | None = None,
    ) -> None:
        contracts = ContractStore(etcd, settings.default_compatibility)
        standards = StandardStore(etcd)
        ContractRpcs.__init__(self, contracts, standards, settings)
        StandardRpcs.__init__(self, standards, contracts, settings)
        model = ModelStore(etcd)
        rule_sets = RuleSetStore(etcd)
        ModelRpcs.__init__(self, model, contracts)
        requests = ScanRequests(
            contracts,
            rule_sets,
            model,
            settings.scan_connections,
            settings.scan_chunk_rows,
            settings.scan_sample_rows,
        )
        ScanRpcs.__init__(self, ScanStore(etcd), ScheduleStore(etcd), requests, settings)
        RuleRpcs.__init__(
            self,
            rule_sets,
            engines if engines is not None else load_plugins(RULE_ENGINES),
            settings,
        )


def governance_binding(etcd: EtcdClient, settings: GovernanceSettings) -> ServiceBinding:
    """Return the binding that serves the governance service on `etcd`.

    Args:
        etcd: A connected client; the caller closes it after the server stopped.
        settings: The service's settings.

    """
    return ServiceBinding(
        GOVERNANCE_SERVICE,
        GovernanceServicer(etcd, settings),
        governance_pb2_grpc.add_GovernanceServicer_to_server,
    )
