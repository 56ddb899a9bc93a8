import time

from tessera.ratelimit._circuit import RedisCircuit


def test_ratelimit_circuit_opens_on_failure_and_lets_one_probe_through() -> None:
    circuit = RedisCircuit(open_s=0.05)
    assert circuit.allows()
    circuit.failed()
    assert circuit.is_open
    assert not circuit.allows()  # open: the failure policy answers without trying Redis
    time.sleep(0.06)
    assert circuit.allows()  # half-open: this caller probes
    assert not circuit.allows()  # the others wait for the probe
    circuit.failed()
    assert not circuit.allows()
    time.sleep(0.06)
    assert circuit.allows()
    circuit.succeeded()
    assert not circuit.is_open
    assert circuit.allows()
    assert circuit.allows()


def test_ratelimit_circuit_abandoned_probe_lets_the_next_call_probe() -> None:
    circuit = RedisCircuit(open_s=0.01)
    circuit.failed()
    time.sleep(0.02)
    assert circuit.allows()
    circuit.abandoned()  # the probing call was cancelled: no verdict on Redis
    assert circuit.allows()
    assert circuit.is_open
