from __future__ import annotations

import gc


def freeze_startup_heap(thresholds: tuple[int, int, int]) -> None:
    """Hide what start-up built from the garbage collector and set its thresholds.

    Call it once, after a service's resources are open and before it serves: everything
    allocated so far lives as long as the process, so it is collected once and frozen
    (`gc.freeze`), and no later collection scans it again. `thresholds` replaces Python's
    default (700, 10, 10): a service whose requests allocate many short-lived objects raises the
    first to collect the youngest generation less often.

    Args:
        thresholds: The three generation thresholds, as `gc.set_threshold` takes them.

    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
