"""The speed defaults decided from the machine: OpenMP wait policy at import, precision auto."""

import os
import subprocess
import sys

import pytest
import torch

from aelab import _threads
from aelab.train.precision import autocast_context, cpu_has_native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "busy, expect",
    [
        (0.0, "GOMP_SPINCOUNT"),
        (0.4, "GOMP_SPINCOUNT"),
        (0.6, "OMP_WAIT_POLICY"),
        (1.9, "OMP_WAIT_POLICY"),
        (None, "OMP_WAIT_POLICY"),
    ],
)
def test_idle_cpus_spin_busy_ones_sleep(busy, expect):
    changes, why = _threads.decide({}, lambda: busy, cpus=2, threads=2)
    assert list(changes) == [expect]
    assert changes.get("OMP_WAIT_POLICY", "PASSIVE") == "PASSIVE"
    assert ("spin" if expect == "GOMP_SPINCOUNT" else "passive") in why


def test_a_big_machine_with_room_for_our_threads_spins():
    assert "GOMP_SPINCOUNT" in _threads.decide({}, lambda: 20.0, cpus=64, threads=8)[0]
    assert "OMP_WAIT_POLICY" in _threads.decide({}, lambda: 60.0, cpus=64, threads=8)[0]


def test_the_users_variables_and_aelab_omp_wait_win():
    assert _threads.decide({"OMP_WAIT_POLICY": "ACTIVE"}, lambda: 2.0, 2, 2) == (
        {},
        "set by the user (OMP_WAIT_POLICY=ACTIVE)",
    )
    assert _threads.decide({"GOMP_SPINCOUNT": "5"}, lambda: 2.0, 2, 2)[0] == {}
    assert _threads.decide({"AELAB_OMP_WAIT": "spin"}, lambda: 2.0, 2, 2)[0] == {"GOMP_SPINCOUNT": _threads.SPIN_COUNT}
    assert _threads.decide({"AELAB_OMP_WAIT": "passive"}, lambda: 0.0, 2, 2)[0] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert _threads.decide({}, lambda: 0.0, 2, 1)[0] == {}  # one thread never waits on another

    def must_not_sample():
        raise AssertionError("the load was sampled although it decides nothing")

    for env in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"AELAB_OMP_WAIT": "spin"}, {"AELAB_OMP_WAIT": "passive"}):
        _threads.decide(env, must_not_sample, 2, 2)


def test_busy_cpus_reads_a_number_in_range():
    b = _threads.busy_cpus(0.02)
    if b is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= b <= os.cpu_count() + 1e-6


def _child_policy(env: dict) -> str:
    code = "import aelab, aelab._threads as t, os; print(t.wait_policy); print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_a_child_of_aelab_decides_again_but_keeps_the_users_choice():
    # the caller's own OpenMP settings would decide for the child (OMP_NUM_THREADS=1: "one thread, no waiting"),
    # so the child gets none of them and two threads, whatever this machine and shell have
    ours = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "AELAB_OMP_WAIT", _threads.MARKER)
    base = {**{k: v for k, v in os.environ.items() if k not in ours}, "OMP_NUM_THREADS": "2"}
    inherited = {**base, "OMP_WAIT_POLICY": "PASSIVE", _threads.MARKER: "OMP_WAIT_POLICY", "AELAB_OMP_WAIT": "spin"}
    out = _child_policy(inherited).splitlines()
    assert out[0].startswith("spin") and out[1] == f"None {_threads.SPIN_COUNT}"
    users = {**base, "OMP_WAIT_POLICY": "PASSIVE"}
    assert _child_policy(users).splitlines()[0] == "set by the user (OMP_WAIT_POLICY=PASSIVE)"
    assert "OMP_WAIT_POLICY" not in _threads.without_ours(inherited)
    assert _threads.without_ours(users)["OMP_WAIT_POLICY"] == "PASSIVE"


def test_precision_auto_takes_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv("AELAB_PRECISION", raising=False)  # it decides auto whatever the flags (test_device.py)
    assert cpu_has_native_bf16(frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert cpu_has_native_bf16(frozenset({"avx512f", "avx512_bf16"}))
    assert not cpu_has_native_bf16(frozenset({"avx2", "fma", "avx512f"}))
    assert resolve_precision("auto", CPU, frozenset({"amx_bf16"})) == "bf16-mixed"
    assert resolve_precision("auto", CPU, frozenset({"avx2"})) == "fp32"
    assert resolve_precision("auto", torch.device("cuda"), frozenset({"amx_bf16"})) == "fp32"
    assert resolve_precision("bf16-mixed", CPU, frozenset()) == "bf16-mixed"  # asked for: given, even if slow


def test_autocast_context_runs_matmuls_in_the_resolved_format():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with autocast_context(CPU, "bf16-mixed"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast_context(CPU, "fp32"):
        assert (x @ w).dtype == torch.float32


def test_the_run_summary_says_what_was_chosen(tiny_cfg, tmp_path):
    import aelab

    run = aelab.train(tiny_cfg.replace(["train.epochs=1"]), out=tmp_path / "r", log=lambda s: None)
    assert run.summary["precision"] == resolve_precision("auto", CPU)
    assert run.summary["omp_wait_policy"] == _threads.wait_policy
    assert run.summary["threads"] == torch.get_num_threads()
