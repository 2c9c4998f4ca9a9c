"""Runs one benchmark measurement in a fresh Python process and says how it ended.

A fresh process per measurement keeps peaks apart (a process's high-water mark and TF's allocator
never shrink back) and lets a measurement that runs out of memory die without taking the others
with it. The child (``lite_tf.bench.child``) measures its own memory and writes its row to a file,
atomically, so a killed child leaves no row: the parent reports it as killed, with the signal's name.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATUSES = ("ok", "error", "oom", "killed", "timeout", "skipped")


def _last_error_line(stderr: str) -> str:
    """The last exception of a traceback on one line (with Keras's explanation, which follows it)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    starts = [i for i, line in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
    if not starts:
        return lines[-1][:500] if lines else "no output"
    message = []
    for line in lines[starts[-1]:starts[-1] + 3]:
        if line.startswith("Arguments received"):
            break
        message.append(line)
    return " ".join(message)[:500]


def run_in_child(target: str, spec: dict, timeout_s: Optional[float] = None) -> dict:
    """Calls ``target`` ('package.module:function') on ``spec`` in a fresh process.

    Returns the function's row (a dict) with ``status='ok'``, or a row with ``status`` 'error',
    'oom' (TensorFlow ran out of device memory), 'killed' (by a signal, named: SIGKILL is what the
    kernel's out-of-memory killer sends) or 'timeout', and a one-line ``error``. Never raises for
    a failing child.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lite_tf_bench_") as folder:
        result_path = os.path.join(folder, "row.json")
        command = [sys.executable, "-m", "lite_tf.bench.child", target, json.dumps(spec), result_path]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True)
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the child and anything it started
            process.communicate()
            return {**spec, "status": "timeout", "error": f"did not finish within {timeout_s:g} s",
                    "wall_s": time.perf_counter() - started}
        wall = time.perf_counter() - started
        code = process.returncode
        if code < 0:
            name = signal.Signals(-code).name
            why = " (the kernel's out-of-memory killer sends this)" if name == "SIGKILL" else ""
            return {**spec, "status": "killed", "error": f"killed by {name}{why}", "wall_s": wall}
        if code != 0 or not os.path.exists(result_path):
            line = _last_error_line(stderr)
            status = "oom" if ("ResourceExhausted" in line or "OOM" in line) else "error"
            return {**spec, "status": status, "error": f"exit {code}: {line}", "wall_s": wall}
        with open(result_path) as stream:
            row = json.load(stream)
    return {**spec, **row, "status": "ok", "error": None, "wall_s": wall}
