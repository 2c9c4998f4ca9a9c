"""The gradient-quality study (lite_tf/bench/gradient_study.py, tools/gradient_study.py) at tiny sizes."""
import json
import sys

import numpy as np
import pytest

from lite_tf.bench import gradient_study, results, studies
from lite_tf.errors import ConfigError

TINY = dict(image_size=16, support_size=6, way=2, query_size=4, query_batch_size=2, episodes=1, chunk_size=4)


def _measure(config, draws):
    settings = gradient_study.Settings(configs=[config], draws=draws, **TINY)
    (spec,) = gradient_study.specs(settings)
    return gradient_study.measure(spec)


def test_statistics_of_known_draws():
    exact = np.array([3.0, 4.0])  # norm 5
    draws = np.array([[3.0, 4.0], [5.0, 4.0], [1.0, 4.0], [3.0, 8.0]])  # mean [3, 5]
    stats = gradient_study.gradient_statistics(draws, exact)
    assert stats["bias"] == pytest.approx(1 / 5)
    trace = np.var(draws[:, 0], ddof=1) + np.var(draws[:, 1], ddof=1)  # 8/3 + 4
    assert stats["relative_variance"] == pytest.approx(trace / 25)
    cosines = [1.0, 31 / (5 * np.sqrt(41)), 19 / (5 * np.sqrt(17)), 41 / (5 * np.sqrt(73))]
    assert stats["cosine"] == pytest.approx(np.mean(cosines))
    assert stats["bias_noise"] == pytest.approx(np.sqrt(trace / 25 / 4))
    with pytest.raises(ValueError, match="zero"):
        gradient_study.gradient_statistics(draws, np.zeros(2))


def test_unbiased_bias_shrinks_with_draws_and_vanishes_at_h_equal_n_while_variance_falls_with_h():
    few, many = _measure("lite:h=2", 4), _measure("lite:h=2", 48)
    assert many["bias"] < 0.6 * few["bias"]
    assert many["bias"] < 3 * many["bias_noise"]  # what is left is the draws' noise, not bias
    half = _measure("lite:h=4", 48)
    whole = _measure("lite:h=6", 4)  # h = N: every draw is the exact gradient
    assert whole["bias"] < 1e-4 and whole["relative_variance"] < 1e-8 and whole["cosine"] == pytest.approx(1, abs=1e-6)
    assert many["relative_variance"] > half["relative_variance"] > whole["relative_variance"]
    assert 0 < many["cosine"] < half["cosine"] < 1
    none = _measure("lite:h=2:scaling=none", 48)  # h/N of the support term: biased beyond the noise
    assert none["bias"] > 3 * none["bias_noise"]


def test_configurations_cover_every_h_scaling_and_variance_option():
    settings = gradient_study.Settings(h=[5, 10], **{**TINY, "support_size": 10})
    configs = gradient_study.configurations(settings)
    assert configs[0] == "exact" and len(configs) == 1 + 2 * 5
    assert "lite:h=10:scaling=loss" in configs and "lite:h=5:sampling=stratified" in configs
    assert "lite:h=5:redraw=episode" in configs
    no_batches = gradient_study.Settings(h=[5], **{**TINY, "query_batch_size": None})
    assert not any("redraw" in config for config in gradient_study.configurations(no_batches))
    with pytest.raises(ConfigError, match="draws must be >= 2"):
        gradient_study.validate(gradient_study.Settings(draws=1, **TINY))
    with pytest.raises(ConfigError, match="stratified"):
        gradient_study.validate(gradient_study.Settings(configs=["lite:h=2:sampling=stratified:scaling=none"], **TINY))


def test_run_in_fresh_processes_writes_schema_valid_results_and_a_plot(tmp_path):
    pytest.importorskip("matplotlib")
    settings = gradient_study.Settings(configs=["exact", "lite:h=3"], draws=3, **TINY)
    document = gradient_study.run(settings, log=lambda line: None)
    paths = gradient_study.write(str(tmp_path / "g.json"), document, str(tmp_path / "g.png"))
    loaded = json.load(open(paths[0]))
    results.validate(loaded)
    assert [(row["config"], row["status"]) for row in loaded["rows"]] == [("exact", "ok"), ("lite:h=3", "ok")]
    assert loaded["rows"][0]["bias"] == 0 and loaded["rows"][1]["relative_variance"] > 0
    assert "| lite:h=3 |" in open(paths[1]).read()
    assert open(paths[2], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_is_a_clear_error_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'lite_tf\[plot\]'"):
        studies.pyplot()
    document = {"schema": results.SCHEMA, "machine": {}, "settings": {}, "rows": [], "summary": []}
    with pytest.raises(ConfigError, match="matplotlib"):
        gradient_study.write(str(tmp_path / "g.json"), document, str(tmp_path / "g.png"))
    assert list(tmp_path.iterdir()) == []
