"""ORBIT (Massiceti et al., ICCV 2021) for lite_tf: one module per job.

index.py (folder index, cached), annotations.py (extra annotations and filters), protocol.py (the
official protocols' rules), tasks.py (which frames form a task), pipeline.py (tf.data episodes and
evaluation tasks), synthetic.py (generated folders).
Importing the package registers its gin configurables.
"""
from lite_tf.data.orbit.pipeline import load_frames, orbit_eval_tasks, orbit_train_dataset  # noqa: F401
from lite_tf.data.orbit.protocol import CHALLENGE, NEURIPS21, PRESETS, OrbitProtocol  # noqa: F401
