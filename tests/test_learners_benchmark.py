"""Benchmark target lines (lite_tf/bench/targets.py); the benchmark itself is run by hand (README)."""
from lite_tf.bench.targets import summary


def result(mode, size, gib):
    return {"case": "learner", "part": "step", "status": "ok", "learner": "simple_cnaps", "backbone": None,
            "dtype_policy": "float32", "query_size": 40, "mode": mode, "h": 40 if mode == "lite" else None,
            "support_size": size, "host_peak_above_baseline_gib": gib, "gpu_peak_gib": None}


def test_targets_pass_and_fail():
    passing = summary([result("lite", 100, 3.0), result("lite", 500, 3.3), result("full", 100, 9.5)])
    assert passing == ["LITE memory N=500 / N=100: 1.10x (PASS: flat means <= 1.25x)",
                       "full / LITE memory at N=100: 3.17x (PASS: target >= 3x)"]
    failing = summary([result("lite", 100, 3.0), result("lite", 500, 6.0), result("full", 100, 6.0)])
    assert all("FAIL" in line for line in failing) and len(failing) == 2


def test_gpu_peak_is_the_memory_judged_when_present():
    rows = [{**result("lite", 100, 9.0), "gpu_peak_gib": 2.0}, {**result("full", 100, 9.0), "gpu_peak_gib": 8.0}]
    assert summary(rows) == ["full / LITE memory at N=100: 4.00x (PASS: target >= 3x)"]
