"""tools/benchmark_learners.py target checks (the benchmark itself is run by hand; see its docstring)."""
from tools.benchmark_learners import check_targets


def result(mode, size, gib):
    return {"mode": mode, "support_size": size, "peak_above_baseline_gib": gib}


def test_targets_pass_and_fail():
    passing = check_targets([result("lite", 100, 3.0), result("lite", 500, 3.3), result("full", 100, 9.5)])
    assert passing == ["LITE memory N=500 / N=100: 1.10x (PASS: flat means <= 1.25x)",
                       "full / LITE memory at N=100: 3.17x (PASS: target >= 3x)"]
    failing = check_targets([result("lite", 100, 3.0), result("lite", 500, 6.0), result("full", 100, 6.0)])
    assert all("FAIL" in line for line in failing) and len(failing) == 2
