"""The memory planner: the fit and the choice on synthetic probes, and one tiny end-to-end run."""
import pytest

from lite_tf import LiteConfig, plan
from lite_tf.errors import ConfigError
from lite_tf.plan import Choice, Fit, Probe, Setting

FLOAT32 = Setting(40, False, "float32")
REMAT = Setting(40, True, "float32")


def synthetic(setting, fixed, per_image, hs=(4, 12, 20), per_chunk=0.0, noise=(0.0, 0.0, 0.0)):
    return [Probe(setting, h, fixed + per_image * h + per_chunk * setting.chunk_size + e) for h, e in zip(hs, noise)]


def test_fit_recovers_the_line_per_setting():
    probes = synthetic(FLOAT32, 1.5, 0.08) + synthetic(REMAT, 1.2, 0.02, noise=(0.01, -0.02, 0.01))
    fits = {f.remat: f for f in plan.fit(probes)}
    assert fits[False].intercept == pytest.approx(1.5) and fits[False].per_image == pytest.approx(0.08)
    # Through the upper probes (h=12: 1.42, h=20: 1.61): slope 0.19 / 8; the h=4 probe (1.29) is 0.06 above it.
    assert fits[True].per_image == pytest.approx(0.02375) and fits[True].intercept == pytest.approx(1.135)
    assert fits[True].max_residual == pytest.approx(0.06) and fits[False].max_residual < 1e-9


def hinge(h, plateau=2.0, fixed=1.5, per_image=0.0625):
    """A peak that is flat until H's back-propagation dominates, then linear (what probes show)."""
    return max(plateau, fixed + per_image * h)


def test_fit_goes_through_the_upper_probes_not_the_plateau():
    (line,) = plan.fit([Probe(FLOAT32, h, hinge(h)) for h in (2, 4, 20, 40)])  # upper: h >= 20
    assert (line.intercept, line.per_image) == (pytest.approx(1.5), pytest.approx(0.0625))
    assert line.max_residual == pytest.approx(2.0 - 1.625)  # the h=2 probe on the plateau
    assert [p.h for p in plan.upper([Probe(FLOAT32, h, 0.0) for h in (5, 25)])] == [5, 25]  # two h: both


def test_probe_spacing_and_refinement_point():
    assert plan.default_probe_h(100) == [5, 25] and plan.default_probe_h(16) == [1, 4]
    assert plan.default_probe_h(4) == [1, 2]
    assert plan.refine_h(31, [5, 25]) == 31  # past the largest probe by less than a quarter: probe at it
    assert plan.refine_h(25, [5, 25]) is None  # at a probe: measured already
    assert plan.refine_h(49, [5, 25]) == 39 and plan.refine_h(80, [5, 25]) == 64
    assert plan.refine_h(71, [5, 25, 80]) == 71  # between probes, the nearest below far off: probe at it
    assert plan.refine_h(76, [5, 25, 71, 80]) is None  # 71 is within a fifth of 76


def test_run_probes_inside_a_long_chord_of_a_convex_peak():
    """Issue 19's 224 px remat row: the peak's slope grows with h (0.023 GiB per image to h=71, 0.121
    above), so the chord through the probes at h=25 and 80 picks h=72 for 6 GiB at 6.00 GiB where it
    needs 5.41 (+10.9 %). The second refinement probes h=72 and refits through 72 and 80: h=76 at
    5.90 GiB, as measured."""
    def convex(h):
        return max(3.175 + 0.023 * h, -3.3 + 0.121 * h)

    measured = []

    def measure(spec):
        measured.append(spec["h"])
        return {"status": "ok", "peak_gib": convex(spec["h"])}

    request = plan.Request(["unused.gin"], memory_budget_gib=6.0, support_size=100, remat=[True], refine=1)
    (chord,) = plan.run(request, log=lambda line: None, measure=measure)["choices"]
    assert measured[2:] == [80, 72] and chord.error == pytest.approx(0.108, abs=1e-3)
    measured.clear()
    request.refine = 2
    (best,) = plan.run(request, log=lambda line: None, measure=measure)["choices"]
    assert measured[2:] == [80, 72, 76]
    assert (best.h, best.predicted_gib, best.measured_gib) == (76, pytest.approx(5.896), pytest.approx(5.896))


def test_a_refining_probe_over_the_budget_caps_h():
    """A refining probe that measures over the budget caps h below it, whatever the refit says
    (resident peaks vary by about 0.1 GiB between runs; a line through close probes can pass it)."""
    peaks = {40: 4.0, 60: 5.0, 64: 6.1}
    measured = []

    def measure(spec):
        measured.append(spec["h"])
        return {"status": "ok", "peak_gib": peaks[spec["h"]]}

    request = plan.Request(["unused.gin"], memory_budget_gib=6.0, support_size=100, probe_h=[40, 60], remat=[True],
                           verify=False)
    result = plan.run(request, log=lambda line: None, measure=measure)
    assert measured[2:] == [64] and result["max_h"] == 63 and result["choices"][0].h == 63  # the refit alone: 67


def test_fit_takes_chunk_size_when_probed_at_several():
    probes = (synthetic(Setting(10, False, "float32"), 1.0, 0.05, per_chunk=0.01)
              + synthetic(Setting(40, False, "float32"), 1.0, 0.05, per_chunk=0.01))
    (only,) = plan.fit(probes)
    assert (only.per_image, only.per_chunk_image) == (pytest.approx(0.05), pytest.approx(0.01))
    assert only.predict(30, 20) == pytest.approx(1.0 + 1.5 + 0.2)


def test_fit_needs_two_h():
    with pytest.raises(ConfigError, match="two or more h"):
        plan.fit([Probe(FLOAT32, 4, 2.0), Probe(FLOAT32, 4, 2.1)])


def test_choice_is_the_largest_h_that_fits_and_prefers_no_remat_at_equal_h():
    fits = plan.fit(synthetic(FLOAT32, 1.5, 0.08) + synthetic(REMAT, 1.2, 0.02))
    # 4 GiB: float32 fits h <= (4 - 1.5) / 0.08 = 31.25 -> 31; remat (4 - 1.2) / 0.02 = 140 -> capped at 100.
    best, other = plan.choose(fits, [FLOAT32, REMAT], 4.0, max_h=100)
    assert (best.setting, best.h, other.setting, other.h) == (REMAT, 100, FLOAT32, 31)
    assert other.predicted_gib == pytest.approx(1.5 + 0.08 * 31) and other.predicted_gib <= 4.0
    best, other = plan.choose(fits, [FLOAT32, REMAT], 20.0, max_h=100)  # both reach N: no recomputation wins
    assert (best.setting, best.h, other.h) == (FLOAT32, 100, 100)
    (none,) = plan.choose(fits, [FLOAT32], 1.0, max_h=100)
    assert none.h == 0
    assert Choice(FLOAT32, 31, 4.4, measured_gib=4.0).error == pytest.approx(0.1)


def test_budgets_and_auto_h_are_checked():
    assert plan.parse_budget("12GiB") == 12 and plan.parse_budget("512MiB") == 0.5 and plan.parse_budget(3) == 3
    for bad in ("twelve", "12 parsecs", -1):
        with pytest.raises(ConfigError, match="memory_budget"):
            plan.parse_budget(bad)
    with pytest.raises(ConfigError, match="memory_budget"):
        LiteConfig(h="auto")
    assert LiteConfig(h="auto", memory_budget="8GiB").h == "auto"


@pytest.mark.slow  # five fresh TF processes: about 50 s on the 2-core machine, over the default budget
def test_tiny_planner_run_predicts_its_own_measurement():
    """Two probes (conv4, 32 px) in fresh processes at once, a refining probe at 13 (80 % of the
    chosen 16, over a quarter beyond the largest probe), one at 16 (past the largest probe), then the
    chosen h measured."""
    request = plan.Request(["gin/benchmarks/plan_tiny.gin"], memory_budget_gib=4.0, support_size=16, query_size=4,
                           probe_h=[2, 8], chunk_sizes=[8], remat=[False], workers=2)
    result = plan.run(request, log=lambda line: None)
    assert [row["status"] for row in result["rows"]] == ["ok"] * 5
    assert [row["h"] for row in result["rows"][2:4]] == [13, 16]
    (best,) = result["choices"]
    assert best.h == 16 and 0.2 < best.predicted_gib < 4.0
    assert abs(best.error) < 0.1, plan.report(result)
    assert "| 16 | 8 | False | float32 |" in plan.report(result)


def test_a_refining_probe_out_of_memory_caps_h():
    """Same probes as above; the refining probe at 64 runs out of memory, so h stays below it."""
    def measure(spec):
        if spec["h"] == 64:
            return {"status": "oom", "error": "exit 1: ResourceExhaustedError"}
        return {"status": "ok", "peak_gib": hinge(spec["h"])}

    request = plan.Request(["unused.gin"], memory_budget_gib=6.0, support_size=100, remat=[False])
    result = plan.run(request, log=lambda line: None, measure=measure)
    (best,) = result["choices"]
    assert (best.h, result["max_h"], best.measured_gib) == (63, 63, hinge(63))


def test_grapplers_tmp_var_clash_is_one_line():
    """The message TensorFlow gave at 224 px, h=49 (grappler's AddN rewrite inside a while loop)."""
    import tensorflow as tf

    from lite_tf import faults

    node = "while/body/_389/while/ArithmeticOptimizer/AddOpsRewrite_add_103"
    message = (f"Graph execution error:\n\nDetected at node {node}/tmp_var defined at (most recent call last):\n"
               f"<stack traces unavailable>\nResource __per_step_0/{node}/tmp_var/frame:6315961604705615773/iter:0/"
               f"N10tensorflow19TemporaryVariableOp6TmpVarE\n\t [[{{{{node {node}/tmp_var}}}}]] [Op:__inference_train_step_1]")
    line = faults.grappler_tmp_var_clash(tf.errors.AlreadyExistsError(None, None, message))
    assert "\n" not in line and f"'{node}/tmp_var'" in line and "smaller LiteConfig.h" in line
    assert faults.grappler_tmp_var_clash(tf.errors.AlreadyExistsError(None, None, "Resource x exists")) is None
    assert faults.grappler_tmp_var_clash(ValueError(message)) is None
