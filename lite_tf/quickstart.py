"""The quickstart: generate the built-in data, meta-train ProtoNets with LITE, evaluate (offline, CPU).

What ``lite_tf_quickstart`` runs; rerunning reuses complete data and, if training finished, the
trained model (lite_tf/model_dir.py).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

CONFIG = "gin/quickstart.gin"
SOURCES = ("glyphs", "shapes", "textures")


def run_quickstart(data_dir: str, model_dir: str, episodes: int = 200, bindings: Sequence[str] = (),
                   image_size: int = 224, classes_per_split: Sequence[int] = (20, 8, 8), images_per_class: int = 30,
                   log: Callable[[str], None] = print) -> dict:
    """Data into ``data_dir``, the run into ``model_dir``, ``episodes`` test episodes per source;
    returns the evaluation results (with "table"), after ``log``-ging each stage."""
    from lite_tf.data.synthetic.demo import make_demo_data
    from lite_tf.experiment import evaluate, train

    started = time.time()
    log(f"[1/3] Generating the built-in data in {data_dir} ({image_size} px, {len(SOURCES)} sources)...")
    make_demo_data(data_dir, list(SOURCES), image_size=image_size, classes_per_split=list(classes_per_split),
                   images_per_class=images_per_class, seed=0, progress=False)
    log(f"[2/3] Meta-training ProtoNets with LITE (gin: {CONFIG}) into {model_dir}...")
    train(model_dir, [CONFIG], [f"IMAGE_SIZE = {image_size}", *bindings], data_dir, verbose=2)
    log(f"[3/3] Evaluating the best model on {episodes} test episodes per source...")
    results = evaluate(model_dir, data_dir, episodes=episodes)
    results["seconds"] = time.time() - started
    results["tensorboard"] = f"tensorboard --logdir {os.path.join(model_dir, 'logs')}"
    return results
