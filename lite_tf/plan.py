"""The memory planner: which h (and chunk size, remat, precision) fits a memory budget.

LITE's peak memory is a fixed part (runtime, weights, optimizer slots, the no-gradient chunk pass,
the queries' back-propagation) plus a per-image cost for every image back-propagated in H, but only
once H's back-propagation is what sets the peak: below some h the peak is an h-independent part
(e.g. the chunk pass) and flat. A line through two probes on that plateau undershoots (measured:
-13 % at 64 px from probes at h=4 and 12). So the planner measures training steps at h far apart
(default: 5 % and 25 % of the support size), each in a fresh process (the benchmark harness's
runner, ``lite_tf.bench.runner``), fits peak = a + b h (+ c chunk_size when several chunk sizes were
probed) per (remat, precision) through the probes at the upper h (``fit``), picks the largest h whose
predicted peak fits the budget, and, when that h is far beyond the probes (or far between two of
them), measures one more probe near it and fits again (``refine``, ``refine_h``). Then it measures a
step at the chosen h to show the prediction's error. Peak memory is the GPU allocator's peak on a GPU, else the process's peak
resident memory (absolute: a budget is what the whole process may use).

``lite_tf_plan`` (tools/plan.py) is the command; ``LiteConfig(h='auto', memory_budget=...)`` runs
the same planner when an experiment is built from gin (``resolve_auto_h``).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from lite_tf.errors import ConfigError
from lite_tf.memory import GIB, parse_budget  # noqa: F401  (parse_budget: part of the planner's API)

PROBE_TARGET = "lite_tf.plan:probe"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What besides h sets LITE's memory."""
    chunk_size: int
    remat: bool
    dtype_policy: str

    def describe(self) -> str:
        return f"chunk_size={self.chunk_size}, remat={self.remat}, {self.dtype_policy}"


@dataclasses.dataclass
class Probe:
    setting: Setting
    h: int
    peak_gib: float
    step_s: Optional[float] = None


@dataclasses.dataclass
class Fit:
    """peak = intercept + per_image * h + per_chunk_image * chunk_size, for one (remat, precision)."""
    remat: bool
    dtype_policy: str
    intercept: float
    per_image: float
    per_chunk_image: float
    max_residual: float

    def predict(self, h: int, chunk_size: int) -> float:
        return self.intercept + self.per_image * h + self.per_chunk_image * chunk_size


def upper(group: Sequence[Probe]) -> List[Probe]:
    """The probes the line is fitted through: those at h >= half the largest probed h, or, when
    that leaves one h, the two largest h. Lower probes may sit on the flat part (see the module)."""
    hs = sorted({p.h for p in group})
    kept = [h for h in hs if 2 * h >= hs[-1]]
    if len(kept) < 2:
        kept = hs[-2:]
    return [p for p in group if p.h in kept]


def fit(probes: Sequence[Probe]) -> List[Fit]:
    """Least-squares fits of peak against h (and chunk size when probed at several) through the
    upper probes (``upper``), one per (remat, precision); each needs probes at two or more h.
    ``max_residual`` is over every probe of the setting: how far the line misses the lower ones too."""
    fits = []
    groups = {}
    for probe in probes:
        groups.setdefault((probe.setting.remat, probe.setting.dtype_policy), []).append(probe)
    for (remat, policy), group in sorted(groups.items()):
        hs = {p.h for p in group}
        if len(hs) < 2:
            raise ConfigError(f"plan: remat={remat}, {policy} was probed at h={sorted(hs)} only; the fit needs "
                              f"two or more h.")
        used = upper(group)
        chunks = {p.setting.chunk_size for p in used}

        def design(rows):
            columns = [np.ones(len(rows)), [p.h for p in rows]]
            if len(chunks) > 1:
                columns.append([p.setting.chunk_size for p in rows])
            return np.stack(columns, 1).astype(float)

        coefficients, *_ = np.linalg.lstsq(design(used), np.array([p.peak_gib for p in used], float), rcond=None)
        residual = float(np.abs(design(group) @ coefficients - np.array([p.peak_gib for p in group])).max())
        per_chunk = float(coefficients[2]) if len(chunks) > 1 else 0.0
        fits.append(Fit(remat, policy, float(coefficients[0]), float(coefficients[1]), per_chunk, residual))
    return fits


@dataclasses.dataclass
class Choice:
    setting: Setting
    h: int  # 0 when nothing fits
    predicted_gib: float
    measured_gib: Optional[float] = None

    @property
    def error(self) -> Optional[float]:
        """(predicted - measured) / measured."""
        if self.measured_gib is None:
            return None
        return (self.predicted_gib - self.measured_gib) / self.measured_gib


def largest_h(model_fit: Fit, chunk_size: int, budget_gib: float, max_h: int) -> int:
    """The largest h in [1, max_h] whose predicted peak is within the budget; 0 if none is."""
    room = budget_gib - model_fit.predict(0, chunk_size)
    if model_fit.per_image <= 0:
        return max_h if room >= 0 else 0
    return int(max(0, min(max_h, np.floor(room / model_fit.per_image + 1e-9))))


def choose(fits: Sequence[Fit], settings: Iterable[Setting], budget_gib: float, max_h: int) -> List[Choice]:
    """Every setting's largest fitting h, best first: the largest h; at equal h remat off (no
    recomputation), float32 (no rounding), then the larger chunk (fewer passes)."""
    by_key = {(f.remat, f.dtype_policy): f for f in fits}
    choices = []
    for setting in settings:
        model_fit = by_key.get((setting.remat, setting.dtype_policy))
        if model_fit is None:
            continue
        h = largest_h(model_fit, setting.chunk_size, budget_gib, max_h)
        choices.append(Choice(setting, h, model_fit.predict(max(h, 1), setting.chunk_size)))
    return sorted(choices, key=lambda c: (-c.h, c.setting.remat, c.setting.dtype_policy != "float32",
                                          -c.setting.chunk_size))


# ---------------------------------------------------------------------- probes in fresh processes
@dataclasses.dataclass
class Request:
    """What to plan: a gin experiment, the episode the budget must hold, and what may vary."""
    gin_configs: List[str]
    gin_bindings: List[str] = dataclasses.field(default_factory=list)
    memory_budget_gib: float = 12.0
    support_size: int = 100
    query_size: int = 40
    way: int = 5
    probe_h: Optional[List[int]] = None  # default: default_probe_h(support_size)
    chunk_sizes: List[int] = dataclasses.field(default_factory=lambda: [40])
    remat: List[bool] = dataclasses.field(default_factory=lambda: [False, True])
    dtype_policies: List[str] = dataclasses.field(default_factory=lambda: ["float32"])
    max_h: Optional[int] = None  # default: the support size (h >= N is full back-propagation)
    verify: bool = True
    refine: int = 3  # extra probes near the chosen h, at most (see refine_h)
    timeout_s: Optional[float] = None
    workers: int = 1  # probes run at once (each in its own process; peaks stay apart, times do not)


def default_probe_h(support_size: int) -> List[int]:
    """Two probes far apart: 5 % and 25 % of the support size (at least 1 and 2)."""
    low = max(1, round(0.05 * support_size))
    return [low, max(low + 1, round(0.25 * support_size))]


def refine_h(chosen_h: int, probed: Iterable[int]) -> Optional[int]:
    """Where to probe again before trusting ``chosen_h``, or None. The peak is convex in h (the
    largest of several phases' lines, the steepest last: at 224 px with remat it grows 0.03 GiB per
    image up to h=68 and 0.12 above 71), so a line extrapolated past the probes under-predicts and a
    chord between two probes over-predicts (by 12.4 % at h=71 from probes at 25 and 80). So:

    - beyond the largest probe by more than a quarter: probe at 80 % of ``chosen_h`` (it must fit
      the budget even if the fit underestimates a little; the refit then extrapolates by a quarter
      at most);
    - beyond the largest probe by less: probe at ``chosen_h`` itself (the peak can jump within a few
      images: 224 px remat, 5.66 GiB at h=80, 7.24 at 88); one over the budget caps h below it;
    - between probes, the nearest one below more than a fifth lower: probe at ``chosen_h`` itself
      (on a convex peak the chord's h fits), and the refit goes through it and the probe above.
    """
    probed = sorted(set(probed))
    if 4 * chosen_h > 5 * probed[-1]:
        return int(round(0.8 * chosen_h))
    if chosen_h > probed[-1]:
        return int(chosen_h)
    below = [h for h in probed if h <= chosen_h]
    if chosen_h < probed[-1] and below and 5 * below[-1] < 4 * chosen_h:
        return int(chosen_h)
    return None


def _probe_spec(request: Request, setting: Setting, h: int) -> dict:
    return {"part": "plan", "gin_configs": [os.path.abspath(c) if os.path.isfile(c) else c
                                            for c in request.gin_configs],
            "gin_bindings": list(request.gin_bindings), "h": int(h), "chunk_size": setting.chunk_size,
            "remat": setting.remat, "dtype_policy": setting.dtype_policy, "support_size": request.support_size,
            "query_size": request.query_size, "way": request.way}


def probe(spec: dict) -> dict:
    """Child side: builds the gin experiment's model with the probed settings, runs one warm-up and
    one timed training step on a synthetic episode; reports the peak (GPU allocator, else resident)."""
    import tensorflow as tf

    from lite_tf import episode_signature, experiment, faults, memory, runtime
    from lite_tf.bench.episodes import synthetic_episode

    bindings = list(spec["gin_bindings"]) + [
        f"LiteConfig.h = {spec['h']}", f"LiteConfig.chunk_size = {spec['chunk_size']}",
        f"LiteConfig.remat = {spec['remat']}", "LiteConfig.memory_budget = None",
        f"EpisodicModel.dtype_policy = '{spec['dtype_policy']}'"]
    experiment.parse_gin(spec["gin_configs"], bindings)
    runtime.apply()  # before the GPU peak is reset (that starts TensorFlow's runtime)
    on_gpu = memory.reset_gpu_peak()
    model, _ = experiment.build()
    size = model.image_size
    arrays = synthetic_episode(spec["way"], spec["support_size"], spec["query_size"], size, image_dtype="uint8",
                               seed=0)
    data = {key: tf.constant(value) for key, value in arrays.items()}
    step = tf.function(model.train_step, input_signature=[episode_signature(size, tf.uint8)],
                       reduce_retracing=True)
    times = []
    try:
        for _ in range(2):
            start = time.perf_counter()
            float(step(data)["loss"])
            times.append(time.perf_counter() - start)
    except tf.errors.AlreadyExistsError as error:
        clash = faults.grappler_tmp_var_clash(error)
        if clash is None:
            raise
        raise ConfigError(f"plan: probe h={spec['h']}: {clash}") from None
    peak = memory.gpu_peak_bytes() if on_gpu else memory.peak_resident_bytes()
    return {"peak_gib": peak / GIB, "memory": "gpu allocator peak" if on_gpu else "peak resident",
            "first_step_s": times[0], "step_s": times[1], "image_size": size}


def _in_child(request: Request) -> Callable[[dict], dict]:
    from lite_tf.bench import runner

    return lambda spec: runner.run_in_child(PROBE_TARGET, spec, request.timeout_s)


def run(request: Request, log: Callable = print, measure: Optional[Callable[[dict], dict]] = None) -> dict:
    """Probes, fits, chooses, refines (``refine``) and (``verify``) measures the chosen setting;
    returns a report dict. ``measure(spec) -> row`` runs one probe (default: a fresh process)."""
    measure = measure or _in_child(request)
    settings = [Setting(c, r, p) for c, r, p in itertools.product(request.chunk_sizes, request.remat,
                                                                   request.dtype_policies)]
    max_h = request.max_h or request.support_size
    probe_h = sorted(set(request.probe_h or default_probe_h(request.support_size)))
    planned = list(itertools.product(settings, probe_h))
    specs = [_probe_spec(request, setting, h) for setting, h in planned]
    with concurrent.futures.ThreadPoolExecutor(max(1, request.workers)) as pool:
        rows = list(pool.map(measure, specs))
    probes = []

    def record(setting, h, row):
        if row["status"] != "ok":
            log(f"probe h={h}, {setting.describe()}: {row['status']}: {row['error']}")
            return
        probes.append(Probe(setting, h, row["peak_gib"], row.get("step_s")))
        log(f"probe h={h}, {setting.describe()}: peak {row['peak_gib']:.2f} GiB")

    for (setting, h), row in zip(planned, rows):
        record(setting, h, row)
    if not probes:
        raise ConfigError(f"plan: every probe failed; the first: {rows[0]['error'] if rows else 'none planned'}")
    fits = fit(probes)
    choices = choose(fits, settings, request.memory_budget_gib, max_h)
    first_prediction = None
    for _ in range(max(0, request.refine)):
        best = choices[0] if choices else None
        if best is None or best.h == 0:
            break
        again = refine_h(best.h, [p.h for p in probes if p.setting == best.setting])
        if again is None:
            break
        first_prediction = first_prediction or (best.h, best.predicted_gib)
        row = measure(_probe_spec(request, best.setting, again))
        rows.append(row)
        record(best.setting, again, row)
        over = row["status"] == "ok" and row["peak_gib"] > request.memory_budget_gib
        if row["status"] in ("oom", "killed") or over:  # out of memory or over the budget at h=again:
            max_h = min(max_h, again - 1)  # no larger h fits (a refit through close probes cannot say otherwise)
            choices = choose(fits, settings, request.memory_budget_gib, max_h)
        if row["status"] != "ok":
            break
        fits = fit(probes)
        choices = choose(fits, settings, request.memory_budget_gib, max_h)
    if request.verify and choices and choices[0].h > 0:
        best = choices[0]
        row = measure(_probe_spec(request, best.setting, best.h))
        rows.append(row)
        if row["status"] == "ok":
            best.measured_gib = row["peak_gib"]
        log(f"measured at h={best.h}, {best.setting.describe()}: "
            + (f"peak {row['peak_gib']:.2f} GiB" if row["status"] == "ok" else f"{row['status']}: {row['error']}"))
    return {"request": dataclasses.asdict(request), "fits": [dataclasses.asdict(f) for f in fits],
            "probes": [{"h": p.h, **dataclasses.asdict(p.setting), "peak_gib": p.peak_gib} for p in probes],
            "first_prediction": first_prediction, "choices": choices, "rows": rows, "max_h": max_h}


def report(result: dict) -> str:
    """The planner's answer as Markdown: the fits, then every setting's largest h, best first."""
    request = result["request"]
    lines = [f"Memory budget {request['memory_budget_gib']:g} GiB; episode N={request['support_size']}, "
             f"{request['query_size']} queries, {request['way']}-way; h at most {result['max_h']}.", "",
             "Probes (h: peak GiB): " + "; ".join(
                 f"{p['h']}: {p['peak_gib']:.2f} ({p['chunk_size']}, remat={p['remat']}, {p['dtype_policy']})"
                 for p in result.get("probes", [])) + ".", ""]
    if result.get("first_prediction"):
        h, predicted = result["first_prediction"]
        lines += [f"Before the refining probe the best setting's largest h was {h} (predicted {predicted:.2f} GiB).", ""]
    lines += ["| remat | precision | fixed (GiB) | per h image (GiB) | per chunk image (GiB) | max fit residual (GiB) |",
             "|---|---|---|---|---|---|"]
    for f in result["fits"]:
        lines.append(f"| {f['remat']} | {f['dtype_policy']} | {f['intercept']:.3f} | {f['per_image']:.4f} | "
                     f"{f['per_chunk_image']:.4f} | {f['max_residual']:.3f} |")
    lines += ["", "| largest h | chunk_size | remat | precision | predicted peak (GiB) | measured peak (GiB) | error |",
              "|---|---|---|---|---|---|---|"]
    for c in result["choices"]:
        measured = "-" if c.measured_gib is None else f"{c.measured_gib:.2f}"
        error = "-" if c.error is None else f"{100 * c.error:+.1f} %"
        h = str(c.h) if c.h else "none fits"
        lines.append(f"| {h} | {c.setting.chunk_size} | {c.setting.remat} | {c.setting.dtype_policy} | "
                     f"{c.predicted_gib:.2f} | {measured} | {error} |")
    return "\n".join(lines)


def resolve_auto_h(config, gin_config_text: str, dtype_policy: str = "float32", support_size: int = 100,
                   query_size: int = 40, log: Callable = print) -> int:
    """``LiteConfig(h='auto')``: plans h for ``config.memory_budget`` from the experiment's own gin
    config (written to a temporary file for the probes) with the config's chunk size, remat and
    the precision in the gin config; sets ``config.h`` and returns it."""
    if config.memory_budget is None:
        raise ConfigError("LiteConfig h='auto' needs memory_budget (e.g. LiteConfig.memory_budget = '12GiB').")
    with tempfile.TemporaryDirectory(prefix="lite_tf_plan_") as folder:
        path = os.path.join(folder, "experiment.gin")
        with open(path, "w") as handle:
            handle.write(gin_config_text)
        request = Request([path], memory_budget_gib=parse_budget(config.memory_budget), support_size=support_size,
                          query_size=query_size, chunk_sizes=[config.chunk_size], remat=[config.remat],
                          dtype_policies=[dtype_policy], verify=False)
        result = run(request, log)
    best = result["choices"][0] if result["choices"] else None
    if best is None or best.h == 0:
        raise ConfigError(f"LiteConfig h='auto': no h fits memory_budget {config.memory_budget!r} "
                          f"({report(result).splitlines()[0]}).")
    log(f"LiteConfig h='auto': h={best.h} (predicted peak {best.predicted_gib:.2f} GiB of "
        f"{parse_budget(config.memory_budget):g})")
    config.h = best.h
    return best.h
