"""VTAB-v2 (the VTAB half of VTAB+MD) from TFDS: task table, label functions, splits.

The ``vtab`` data source (gin ``sources.vtab``) is lite_tf/sources/vtab.py; SUN397 as the official
LITE code reads it (an image folder, its split and support rule) is ``image_folder.py``.
"""
from lite_tf.data.vtab.reader import LargeTask, open_task, prepare_command
from lite_tf.data.vtab.tasks import GROUPS, PROTOCOLS, SUPPORT_SIZE, TASK_NAMES, TASKS, VtabTask, get_task, tasks_in

__all__ = ["GROUPS", "LargeTask", "PROTOCOLS", "SUPPORT_SIZE", "TASK_NAMES", "TASKS", "VtabTask",
           "get_task", "open_task", "prepare_command", "tasks_in"]
