"""How torch's OpenMP threads wait between kernels, chosen once, before torch loads libgomp.

libgomp reads its wait policy only when it is loaded, so ``import aelab`` makes
the choice from how busy the CPUs are at that moment (docs/PERFORMANCE.md has
the measurements behind both branches):

- idle CPUs: spin briefly (``GOMP_SPINCOUNT=30000``, about a millisecond) so the
  next kernel starts without a futex wake-up; 1.5-2.5x faster steps than
  sleeping on an idle 2-core machine;
- busy CPUs: sleep at once (``OMP_WAIT_POLICY=PASSIVE``); a spinning thread
  there burns the time slice the thread it waits for needs, 2-20x slower.

``AELAB_OMP_WAIT=spin|passive|auto`` forces a branch; an ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` the user exported always wins over aelab.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SPIN_COUNT = "30000"
CHOICES = ("auto", "spin", "passive")

#: What was decided at import, for summaries and benchmark files.
wait_policy: str = "not decided"


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot; None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user
    return total - idle, total


def busy_cpus(window: float = 0.06) -> float | None:
    """How many CPUs other processes kept busy over ``window`` seconds (this one sleeps meanwhile)."""
    a = _cpu_ticks()
    if a is None:
        return None
    time.sleep(window)
    b = _cpu_ticks()
    if b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)


def _threads_wanted(env: dict) -> int:
    try:
        return max(1, int(env.get("OMP_NUM_THREADS", "")))
    except ValueError:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


def decide(env: dict, measure_busy: Callable[[], float | None], cpus: int, threads: int) -> tuple[dict, str]:
    """The variables to set, and one line saying why. ``measure_busy`` is called only when the load decides.

    Pure apart from that call, so it can be tested without a busy machine.
    """
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        what = ", ".join(f"{k}={env[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in env)
        return {}, f"set by the user ({what})"
    mode = env.get("AELAB_OMP_WAIT", "auto").strip().lower() or "auto"
    if mode not in CHOICES:
        mode = "auto"  # an unknown value must not stop the import; the line below says what was done
    if threads <= 1:
        return {}, "one thread: no waiting between threads"
    if mode == "spin":
        return {"GOMP_SPINCOUNT": SPIN_COUNT}, f"spin (GOMP_SPINCOUNT={SPIN_COUNT}, asked by AELAB_OMP_WAIT)"
    if mode == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}, "passive (asked by AELAB_OMP_WAIT)"
    busy = measure_busy()
    if busy is None:
        return {"OMP_WAIT_POLICY": "PASSIVE"}, "passive (CPU load unknown)"
    if cpus - busy >= threads - 0.5:
        return {
            "GOMP_SPINCOUNT": SPIN_COUNT
        }, f"spin (GOMP_SPINCOUNT={SPIN_COUNT}): {busy:.1f} of {cpus} CPUs busy at start"
    return {"OMP_WAIT_POLICY": "PASSIVE"}, f"passive: {busy:.1f} of {cpus} CPUs busy at start, {threads} threads wanted"


MARKER = "AELAB_OMP_SET"  # names the variables aelab set itself, so a child process decides afresh


def without_ours(env: dict) -> dict:
    """``env`` minus what an aelab import set: for children that must not inherit this process's choice."""
    ours = [k for k in env.get(MARKER, "").split(",") if k]
    return {k: v for k, v in env.items() if k not in ours and k != MARKER}


def choose_wait_policy() -> str:
    """Sets the variables before torch is imported; returns (and keeps) the line saying what was chosen."""
    global wait_policy
    env = without_ours(dict(os.environ))  # a parent aelab's choice is not the user's: decide afresh
    for k in set(os.environ) - set(env):
        del os.environ[k]
    changes, wait_policy = decide(env, busy_cpus, os.cpu_count() or 1, _threads_wanted(env))
    os.environ.update(changes)
    if changes:
        os.environ[MARKER] = ",".join(changes)
    return wait_policy
