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
    assert fits[True].intercept == pytest.approx(1.2, abs=0.03) and fits[True].per_image == pytest.approx(0.02, abs=3e-3)
    assert fits[True].max_residual == pytest.approx(0.02, abs=0.01) and fits[False].max_residual < 1e-9


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


@pytest.mark.slow  # three fresh TF processes: about 38 s on the 2-core machine, over the default budget
def test_tiny_planner_run_predicts_its_own_measurement():
    """Two probes (conv4, 32 px) in fresh processes at once, then the chosen h measured."""
    request = plan.Request(["gin/benchmarks/plan_tiny.gin"], memory_budget_gib=4.0, support_size=16, query_size=4,
                           probe_h=[2, 8], chunk_sizes=[8], remat=[False], workers=2)
    result = plan.run(request, log=lambda line: None)
    assert [row["status"] for row in result["rows"]] == ["ok"] * 3
    (best,) = result["choices"]
    assert best.h == 16 and 0.2 < best.predicted_gib < 4.0
    assert abs(best.error) < 0.1, plan.report(result)
    assert "| 16 | 8 | False | float32 |" in plan.report(result)
