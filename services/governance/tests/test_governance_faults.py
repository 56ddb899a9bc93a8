from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from tessera.core.etcd import EtcdClient, RetryPolicy
from tessera.governance import GovernanceSettings, governance_binding
from tessera.proto.governance.v1 import contracts_pb2, governance_pb2_grpc, rules_pb2

# Few retries once etcd is gone (a refused connection fails at once), so the test measures the
# error, not the retry budget; the per-call timeout stays generous for a loaded machine.
FAST = RetryPolicy(attempts=2, initial_backoff_s=0.05, max_backoff_s=0.1, deadline_s=10.0)


async def test_etcd_down_is_unavailable_and_cached_rule_sets_keep_evaluating(
    etcd_factory, running_service
):
    etcd_server = etcd_factory()
    async with EtcdClient([etcd_server.endpoint], timeout_s=5.0, retry=FAST) as etcd:
        settings = GovernanceSettings(port=0, metrics_port=None)
        service = await running_service([governance_binding(etcd, settings)], settings)
        stub = governance_pb2_grpc.GovernanceStub(service.channel)
        await stub.RegisterContract(
            contracts_pb2.RegisterContractRequest(subject="s", schema_json='{"type": "object"}')
        )
        rules = [rules_pb2.Rule(name="adult", expression="record.age >= 18")]
        await stub.PutRuleSet(
            rules_pb2.PutRuleSetRequest(rule_set=rules_pb2.RuleSet(name="r", rules=rules))
        )
        await asyncio.to_thread(etcd_server.stop)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RegisterContract(
                contracts_pb2.RegisterContractRequest(subject="s", schema_json=json.dumps(True)),
                timeout=10,
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EvaluateRecord(
                rules_pb2.EvaluateRecordRequest(rule_set="r", record_json=b'{"age": 20}'),
                timeout=10,
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        # A pinned version is immutable and already compiled: it needs no etcd.
        pinned = await stub.EvaluateRecord(
            rules_pb2.EvaluateRecordRequest(rule_set="r", version=1, record_json=b'{"age": 20}'),
            timeout=10,
        )
        assert pinned.result.valid
