import threading

from tessera.testing import (
    ACQUIRE,
    OK,
    RELEASE,
    History,
    Operation,
    check_exclusive_holds,
    check_fencing_tokens,
)


def _acquire(
    client: str, start: float, end: float, token: int | None = None, *, key: str = "L"
) -> Operation:
    return Operation(client, ACQUIRE, start, end, OK, token, key)


def _release(
    client: str, start: float, end: float, result: str = OK, *, key: str = "L"
) -> Operation:
    return Operation(client, RELEASE, start, end, result, None, key)


def test_sequential_holds_of_one_lock_are_exclusive() -> None:
    history = [
        _acquire("a", 0, 1, 1),
        _release("a", 2, 3),
        _acquire("b", 2.5, 4, 2),  # invoked while a was releasing: granted once a let go
        _release("b", 5, 6),
    ]

    assert check_exclusive_holds(history) == []
    assert check_fencing_tokens(history) == []


def test_overlapping_holds_by_two_clients_are_reported() -> None:
    a_acquire, a_release = _acquire("a", 0, 1), _release("a", 5, 6)
    b_acquire, b_release = _acquire("b", 2, 3), _release("b", 4, 7)

    violations = check_exclusive_holds([a_acquire, b_acquire, a_release, b_release])

    assert len(violations) == 1
    violation = violations[0]
    assert (violation.kind, violation.key) == ("overlapping holds", "L")
    assert violation.operations == (a_acquire, b_acquire, a_release, b_release)
    assert "a held 'L'" in violation.description
    assert "b held it" in violation.description


def test_holds_that_only_touch_do_not_overlap() -> None:
    history = [_acquire("a", 0, 1), _release("a", 2, 3), _acquire("b", 1.5, 2), _release("b", 4, 5)]

    assert check_exclusive_holds(history) == []


def test_holds_of_different_locks_or_of_one_client_may_overlap() -> None:
    history = [
        _acquire("a", 0, 1, key="L1"),
        _acquire("b", 0, 1, key="L2"),
        _release("a", 5, 6, key="L1"),
        _release("b", 5, 6, key="L2"),
        _acquire("c", 0, 1, key="L3"),
        _release("c", 2, 3, key="L3"),
        _acquire("c", 2.5, 3.5, key="L3"),
        _release("c", 4, 5, key="L3"),
    ]

    assert check_exclusive_holds(history) == []


def test_holds_without_a_successful_release_are_not_judged() -> None:
    history = [
        _acquire("a", 0, 1),
        _release("a", 8, 9, result="lease lost"),  # a's lease may have expired long before
        _acquire("b", 2, 3),
        _release("b", 4, 5),
        _acquire("c", 2, 3),  # never released: c may have crashed and its lease expired
        Operation("d", ACQUIRE, 0, 1, "timeout", None, "L"),
        _release("d", 4, 5),
    ]

    assert check_exclusive_holds(history) == []


def test_three_overlapping_clients_give_one_violation_per_pair() -> None:
    history = []
    for client in "abc":
        history += [_acquire(client, 0, 1), _release(client, 5, 6)]

    pairs = {
        (violation.operations[0].client, violation.operations[1].client)
        for violation in check_exclusive_holds(history)
    }

    assert pairs == {("a", "b"), ("a", "c"), ("b", "c")}


def test_a_token_smaller_than_an_earlier_grant_is_reported() -> None:
    first, second, third = _acquire("a", 0, 1, 5), _acquire("b", 2, 3, 7), _acquire("c", 4, 5, 6)

    violations = check_fencing_tokens([third, first, second])

    assert len(violations) == 1
    assert violations[0].kind == "token order"
    assert violations[0].operations == (second, third)
    assert "token 6 after b had been granted it with token 7" in violations[0].description


def test_concurrent_grants_may_carry_tokens_in_either_order() -> None:
    history = [_acquire("a", 0, 3, 9), _acquire("b", 1, 2, 8), _acquire("c", 4, 5, 10)]

    assert check_fencing_tokens(history) == []


def test_a_token_granted_twice_is_reported_even_to_concurrent_grants() -> None:
    first, second = _acquire("a", 0, 3, 4), _acquire("b", 1, 2, 4)

    violations = check_fencing_tokens([first, second])

    assert [(violation.kind, violation.operations) for violation in violations] == [
        ("duplicate token", (first, second))
    ]


def test_fencing_check_ignores_failed_and_tokenless_acquisitions_and_other_keys() -> None:
    history = [
        _acquire("a", 0, 1, 5),
        Operation("b", ACQUIRE, 2, 3, "error", 1, "L"),
        _acquire("c", 2, 3, None),
        _acquire("d", 2, 3, 1, key="other lock"),
    ]

    assert check_fencing_tokens(history) == []


def test_history_records_invocations_from_many_threads() -> None:
    history = History()

    def client(name: str) -> None:
        for token in range(100):
            history.invoke(name, ACQUIRE, key="L").complete(OK, token=token)

    threads = [threading.Thread(target=client, args=(f"c{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(history) == 400
    assert all(operation.start <= operation.end for operation in history)
    assert {operation.client for operation in history.operations} == {"c0", "c1", "c2", "c3"}


def test_invocation_completes_into_an_operation() -> None:
    history = History()
    invocation = history.invoke("a", ACQUIRE, key="L")

    operation = invocation.complete(OK, token=3)

    assert list(history) == [operation]
    assert (operation.client, operation.op, operation.key, operation.token) == (
        "a",
        ACQUIRE,
        "L",
        3,
    )
    assert operation.succeeded
    assert operation.start == invocation.start <= operation.end
