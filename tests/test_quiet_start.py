"""Quiet start-up on error paths, from any working directory: a launcher prints its own lines only.

TensorFlow writes start-up lines (absl's pre-InitializeLog warning, CUDA probing, oneDNN) before
any log level applies, so an exported TF_CPP_MIN_LOG_LEVEL=3 did not stop them; gin logged "Path
not found" for every include it probed in the working directory first. Both launchers run at once
(two cores) from a temporary folder.
"""
import os
import subprocess
import sys

from tests.launch_helpers import launcher_env

EXPECTED = ("error: Bad gin configuration: --gin_bindings='Training.epochs = (', line 1: '(' is never closed "
            "(the text ends first); close it where the value ends.\n")


def test_error_path_prints_only_the_programs_line_from_another_folder_with_and_without_a_log_level(tmp_path):
    # md_protonets.gin includes gin/data, gin/learners and gin/schedules files: they must resolve
    # against lite_tf's folder, not the working directory; the binding then fails to parse.
    command = [sys.executable, "-m", "lite_tf.tools.train", "--gin_config=gin/experiments/md_protonets.gin",
               "--gin_bindings=Training.epochs = (", f"--model_dir={tmp_path / 'run'}",
               f"--data_root={tmp_path / 'missing'}"]
    environments = [launcher_env(), dict(launcher_env(), TF_CPP_MIN_LOG_LEVEL="3")]
    processes = [subprocess.Popen(command, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for env in environments]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert output == EXPECTED
        assert process.returncode == 2
    assert not os.path.exists(tmp_path / "run")
