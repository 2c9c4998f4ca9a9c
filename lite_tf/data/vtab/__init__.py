"""VTAB-v2 (the VTAB half of VTAB+MD) from TFDS: task table, label functions, splits, a source.

Importing the package registers the ``vtab`` source (gin ``sources.vtab``).
"""
from lite_tf.data.vtab.reader import LargeTask, open_task, prepare_command
from lite_tf.data.vtab.source import VtabSource
from lite_tf.data.vtab.tasks import GROUPS, PROTOCOLS, SUPPORT_SIZE, TASK_NAMES, TASKS, VtabTask, get_task, tasks_in

__all__ = ["GROUPS", "LargeTask", "PROTOCOLS", "SUPPORT_SIZE", "TASK_NAMES", "TASKS", "VtabSource", "VtabTask",
           "get_task", "open_task", "prepare_command", "tasks_in"]
