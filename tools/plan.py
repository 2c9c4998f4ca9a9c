"""The memory planner: the largest LITE h (and the chunk size, remat, precision) that fits a budget.

Probes a few training steps at small h, each in a fresh process, fits peak memory against h, and
prints every setting's largest fitting h with its predicted peak; the best one is then measured
(``--verify``) to show the prediction's error. Peak = GPU allocator peak on a GPU, else the
process's peak resident memory. See lite_tf/plan.py.

  python -m tools.plan --gin_config=gin/experiments/md_simple_cnaps.gin --memory_budget=12GiB \
      --gin_bindings="backbones.efficientnet_b0_film.weights = None"
  lite_tf_plan --gin_config=gin/benchmarks/tiny.gin ... --memory_budget=2GiB --probe_h=2,8 --remat=false,true
"""
from __future__ import annotations

import json

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_multi_string("gin_config", [], "The experiment's gin file(s), parsed in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings (e.g. random backbone weights: memory does "
                                                  "not depend on them, and nothing is downloaded).")
    flags.DEFINE_string("memory_budget", "12GiB", "What one process may use, e.g. 12GiB, 800MiB.")
    flags.DEFINE_integer("support_size", 100, "Support images N of the episode planned for.")
    flags.DEFINE_integer("query_size", 40, "Query images of the episode planned for.")
    flags.DEFINE_integer("way", 5, "Classes of the episode planned for.")
    flags.DEFINE_list("probe_h", [], "h of the probe steps (two or more, far apart; default: 5 % and 25 % of "
                                     "--support_size).")
    flags.DEFINE_list("chunk_size", ["40"], "Chunk sizes considered.")
    flags.DEFINE_list("remat", ["false", "true"], "Remat settings considered.")
    flags.DEFINE_list("dtype_policy", ["float32"], "Precisions considered: float32, mixed_bfloat16, mixed_float16.")
    flags.DEFINE_integer("max_h", None, "Largest h worth having (default: the support size).")
    flags.DEFINE_bool("verify", True, "Measure a step at the chosen h and print the prediction's error.")
    flags.DEFINE_integer("refine", 3, "Extra probes near the chosen h, at most: at 80 % of it when it is over a "
                                      "quarter beyond the largest probed h, at it when the nearest probe below is "
                                      "over a fifth lower and one lies above (lite_tf.plan.refine_h); 0: none.")
    flags.DEFINE_float("probe_timeout_s", None, "Stop a probe's process after this long.")
    flags.DEFINE_integer("workers", 1, "Probes run at once, each in its own process (peaks stay apart; step "
                                       "times then overlap).")
    flags.DEFINE_string("output", None, "Also write the report as JSON here.")


def _booleans(values) -> list:
    from lite_tf.errors import ConfigError

    table = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}
    bad = [v for v in values if v.lower() not in table]
    if bad:
        raise ConfigError(f"--remat takes true/false values; got {', '.join(bad)}.")
    return [table[v.lower()] for v in values]


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf import plan
    from lite_tf.errors import ConfigError

    if not FLAGS.gin_config:
        raise ConfigError("lite_tf_plan needs --gin_config (the experiment to plan for).")
    request = plan.Request(
        gin_configs=FLAGS.gin_config, gin_bindings=FLAGS.gin_bindings,
        memory_budget_gib=plan.parse_budget(FLAGS.memory_budget), support_size=FLAGS.support_size,
        query_size=FLAGS.query_size, way=FLAGS.way, probe_h=cli.integers(FLAGS.probe_h, "probe_h") or None,
        chunk_sizes=cli.integers(FLAGS.chunk_size, "chunk_size"), remat=_booleans(FLAGS.remat),
        dtype_policies=FLAGS.dtype_policy, max_h=FLAGS.max_h, verify=FLAGS.verify, refine=FLAGS.refine, timeout_s=FLAGS.probe_timeout_s,
        workers=FLAGS.workers)
    result = plan.run(request)
    print("\n" + plan.report(result))
    if FLAGS.output:
        with open(FLAGS.output, "w") as handle:
            json.dump({**result, "choices": [{**vars(c), "setting": vars(c.setting)} for c in result["choices"]]},
                      handle, indent=1, default=str)
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
