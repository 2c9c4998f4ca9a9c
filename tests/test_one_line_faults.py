"""Every fault is one line (issue 21): damaged image bodies, a full disk anywhere, gin syntax and
plugin names, truncated or non-finite weights, converter messages without TensorFlow's op dumps.

Disk-full cases patch the failing write (no root needed); the real thing, a tiny tmpfs, is @slow
and needs root. Each test names the exact line the user sees and what is left on disk.
"""
import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lite_tf import faults
from lite_tf.errors import ConfigError, DataError
from tests.launch_helpers import REPOSITORY, TINY_CONFIG, config, data_root, launcher_env  # noqa: F401 (fixtures)

ONE_EPOCH = ["Training.epochs = 1", "Training.episodes_per_epoch = 1", "Training.validate_every = 0"]


def train(model_dir, config, bindings, data_root):
    from lite_tf.experiment import train as train_run

    return train_run(str(model_dir), [config], bindings, data_root, verbose=0)


def contents(folder) -> list:
    return sorted(os.path.relpath(os.path.join(top, name), folder)
                  for top, _, names in os.walk(folder) for name in names)


# ------------------------------------------------------------------------------ gin
def test_an_unclosed_bracket_names_the_file_and_line(tmp_path):
    from lite_tf.experiment import ExperimentError, parse_gin

    path = tmp_path / "bad.gin"
    path.write_text("# an experiment\nTraining.epochs = (\n\n")
    with pytest.raises(ExperimentError) as error:
        parse_gin([str(path)])
    assert str(error.value) == (f"Bad gin configuration: {path}, line 2: '(' is never closed (the text ends first); "
                                "close it where the value ends.")
    path.write_text("Training.epochs = 3\nTraining.train_split = '''train\n")
    with pytest.raises(ExperimentError, match=r", line 2: a string \(quote\) is never closed"):
        parse_gin([str(path)])
    with pytest.raises(ExperimentError, match=r"^Bad gin configuration: --gin_bindings='Training.epochs = \[1,', "
                                              r"line 1: '\[' is never closed"):
        parse_gin([], ["Training.epochs = [1,"])


def test_a_misspelt_plugin_lists_the_registered_ones():
    from lite_tf import registry
    from lite_tf.experiment import ExperimentError, parse_gin

    with pytest.raises(ExperimentError) as error:
        parse_gin([], ["EpisodicModel.learner = @learners.protonet()"])
    message = str(error.value)
    assert "No configurable matching reference '@learners.protonet()'" in message
    assert message.endswith(f"Registered learners: {', '.join(registry.list_learners())}. "
                            "Did you mean @learners.protonets?")
    assert "\n" not in message and "^" not in message
    with pytest.raises(ExperimentError, match=r"Registered sources: .*metadataset.*\. Did you mean "
                                              r"@sources\.metadataset\?$"):
        parse_gin([], ["Training.source = @sources.metadatset()"])


# -------------------------------------------------------------------------- weights
def test_a_truncated_npz_is_one_line_and_a_non_finite_tensor_is_refused_by_name(tmp_path):
    from lite_tf.weights import WeightsError, import_weights
    from lite_tf.weights.runs import import_checkpoint

    whole = tmp_path / "w.npz"
    np.savez(whole, **{"param/conv1.weight": np.ones((4, 3, 3, 3), np.float32)})
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole.read_bytes()[:200])  # a cut-off download
    with pytest.raises(WeightsError) as error:
        import_checkpoint("torchvision_resnet18", str(cut), str(tmp_path / "out.weights.h5"))
    assert str(error.value) == (f"Could not read {str(cut)!r} as an .npz file: it is truncated or damaged (File is "
                                "not a zip file); download or copy it again.")

    values = np.ones((4,), np.float32)
    values[2] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **{"param/conv1.weight": np.ones((4, 3, 3, 3), np.float32), "param/bn1.bias": values})
    with pytest.raises(WeightsError) as error:
        import_checkpoint("torchvision_resnet18", str(bad), str(tmp_path / "out.weights.h5"))
    assert str(error.value) == (f"{str(bad)!r}: parameter 'bn1.bias' holds 1 NaN/Inf value(s) of 4; the checkpoint "
                                "is diverged or damaged, so nothing was written. Use another one.")
    assert sorted(os.listdir(tmp_path)) == ["cut.npz", "nan.npz", "w.npz"]  # nothing written
    with pytest.raises(WeightsError, match=r"parameter 'x' holds 1 NaN/Inf"):  # an in-memory state dict too
        import_weights(None, "torchvision_resnet18", {"x": np.array([np.inf], np.float32)})


# ------------------------------------------------------------------------ disk full
REAL_MESSAGES = [  # as TensorFlow 2.21 raised them on a full tmpfs (issue 21)
    ("{{function_node __wrapped__CreateSummaryFileWriter_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
     "/r/logs/train/events.out.tfevents.1.vm.1.0.v2; No space left on device\n\tFailed to flush 1 events to "
     "/r/logs/train/events.out.tfevents.1.vm.1.0.v2\n\tFlushing first event.\n\tCould not initialize events "
     "writer. [Op:CreateSummaryFileWriter] name: ", "/r/logs/train/events.out.tfevents.1.vm.1.0.v2"),
    ("/r/checkpoints/checkpoint.tmpd78f6cf6e3b649a499f8478b7ec8c729; No space left on device",
     "/r/checkpoints/checkpoint"),
    ("{{function_node __wrapped__SaveV2_dtypes_28_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
     "/r/checkpoints/ckpt-2_temp/part-00000-of-00001.data-00000-of-00001.tempstate5663192009796831356; No space "
     "left on device [Op:SaveV2]", "/r/checkpoints/ckpt-2"),
    ("/out/imgs/.tmp-0.tfrecords-vldycolx; No space left on device", "/out/imgs/0.tfrecords"),
]


@pytest.mark.parametrize("message, path", REAL_MESSAGES)
def test_tensorflow_disk_full_errors_name_the_file_the_user_knows(message, path):
    error = faults.disk_full_error(tf.errors.ResourceExhaustedError(None, None, message), then="rerun")
    assert str(error) == f"No space left on device writing {path}. Free space on that disk (or write elsewhere), " \
                         "then rerun."
    assert faults.disk_full_error(tf.errors.InvalidArgumentError(None, None, "bad shape")) is None


def test_a_full_disk_at_the_model_dir_lock_is_one_line(tmp_path, monkeypatch):
    from lite_tf.model_dir import ModelDir

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", no_space)
    with pytest.raises(faults.DiskFullError) as error:
        with ModelDir(str(tmp_path / "run")).lock():
            pass
    assert str(error.value) == (f"No space left on device writing {tmp_path / 'run' / '.lock'}. Free space on that "
                                "disk (or write elsewhere), then rerun the same command (it resumes from the last "
                                "complete checkpoint).")


def test_a_full_disk_in_any_launcher_is_one_line(capsys):
    from lite_tf import cli

    def main(argv):
        raise tf.errors.ResourceExhaustedError(None, None, REAL_MESSAGES[0][0])

    with pytest.raises(SystemExit) as exit:
        cli.main_or_error(main)(["tool"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (f"error: No space left on device writing {REAL_MESSAGES[0][1]}. Free space on "
                                       "that disk (or write elsewhere), then rerun the same command; what was "
                                       "complete is kept.\n")


@pytest.mark.slow  # a training start-up: ~8 s on an idle 2-core VM (the decorator's path is also run below)
def test_a_full_disk_at_the_events_writer_stops_with_one_line_before_any_step(tmp_path, config, data_root,
                                                                              monkeypatch):
    from lite_tf.experiment import parse_gin
    from lite_tf.model_dir import ModelDir

    model_dir = tmp_path / "run"
    events = str(model_dir / "logs" / "train" / "events.out.tfevents.1.vm.1.0.v2")

    def no_space(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, REAL_MESSAGES[0][0].replace(REAL_MESSAGES[0][1], events))

    monkeypatch.setattr(tf.summary, "create_file_writer", no_space)
    with pytest.raises(faults.DiskFullError) as error:
        train(model_dir, config, ONE_EPOCH, data_root)
    assert str(error.value) == (f"No space left on device writing {events}. Free space on that disk (or write "
                                "elsewhere), then rerun the same command; it resumes from the start, as no epoch had "
                                "finished.")
    assert not os.path.exists(model_dir / "checkpoints")
    ModelDir(str(model_dir)).check(parse_gin([config], ONE_EPOCH))  # the same command is accepted again


@pytest.mark.slow  # two short trainings: ~15 s on an idle 2-core VM, 45 s shared
def test_a_full_disk_while_checkpointing_stops_with_one_line_and_a_rerun_finishes(tmp_path, config, data_root,
                                                                                 monkeypatch):
    from lite_tf import callbacks
    from lite_tf.experiment import parse_gin
    from tests.launch_helpers import assert_complete

    model_dir = tmp_path / "run"
    full = str(model_dir / "checkpoints" / "ckpt-1_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate1")

    def save_on_a_full_disk(self, *args, **kwargs):
        os.makedirs(os.path.dirname(full), exist_ok=True)  # what TF leaves: a temporary folder
        raise tf.errors.ResourceExhaustedError(None, None, f"{full}; No space left on device [Op:SaveV2]")

    with monkeypatch.context() as patch:
        patch.setattr(tf.train.CheckpointManager, "save", save_on_a_full_disk)
        with pytest.raises(faults.DiskFullError) as error:
            train(model_dir, config, ONE_EPOCH, data_root)
    assert str(error.value) == (f"No space left on device writing {model_dir / 'checkpoints' / 'ckpt-1'}. Free space "
                                "on that disk (or write elsewhere), then rerun the same command; it resumes from the "
                                "start, as no epoch had finished.")
    assert "best.weights.h5" not in os.listdir(model_dir)  # the epoch was not saved: nothing of it is trusted
    train(model_dir, config, ONE_EPOCH, data_root)  # space freed: the same command
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-1")
    assert not os.path.exists(os.path.dirname(full))  # the leftover temporary was removed
    assert_complete(model_dir, parse_gin([config], ONE_EPOCH))


def test_a_full_disk_while_converting_names_the_class_file(tmp_path, monkeypatch):
    from lite_tf.data.metadataset import records
    from lite_tf.data.writing.request import ConvertRequest
    from tests.convert_helpers import make_folder

    make_folder(str(tmp_path / "birds"), classes=("a", "b", "c", "d"), per_class=2)
    written = []

    def write_until_full(path, images, label):
        if written:
            temporary = os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}-k3xz9q")
            raise tf.errors.ResourceExhaustedError(None, None, f"{temporary}; No space left on device")
        written.append(path)
        return real_write(path, images, label)

    real_write = records.write_class_file
    monkeypatch.setattr(records, "write_class_file", write_until_full)
    request = ConvertRequest(output_dir=str(tmp_path / "out"), image_folder=str(tmp_path / "birds"),
                             split_fractions=(0.5, 0.25, 0.25), progress=False, workers=1)
    with pytest.raises(faults.DiskFullError) as error:
        request.convert()
    assert str(error.value) == (f"No space left on device writing {tmp_path / 'out' / 'birds' / '1.tfrecords'}. Free "
                                "space on that disk (or write elsewhere), then rerun the same command; the class "
                                "files already written are verified and kept.")
    assert contents(tmp_path / "out") == ["birds/0.tfrecords", "birds/lite_tf_manifest.json"]  # no spec yet
    monkeypatch.setattr(records, "write_class_file", real_write)
    report = request.convert()
    assert (report.written, report.resumed) == (3, 1)


def _tmpfs(folder, size: str) -> bool:
    os.makedirs(folder, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.slow  # launcher processes on real full disks: root only (mount), ~1 min
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to mount a tmpfs")
@pytest.mark.parametrize("size, where", [("4k", ".lock"), ("12k", "events.out.tfevents"),
                                         ("48k", "checkpoints/"), ("120k", "checkpoints/")])
def test_real_full_disks_give_one_line(tmp_path, config, data_root, size, where):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, size):
        pytest.skip("cannot mount a tmpfs here")
    try:
        if size == "4k":  # 0 bytes left
            descriptor = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(descriptor, b"\0" * 1024)
            except OSError:
                pass
            finally:
                os.close(descriptor)
        result = subprocess.run([sys.executable, "-m", "lite_tf.tools.train", f"--gin_config={config}",
                                 f"--data_root={data_root}", f"--model_dir={disk / 'run'}", "--verbose=0"],
                                cwd=REPOSITORY, env=launcher_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 2 and result.stdout == "", result.stderr[-3000:]
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: No space left on device writing "), result.stderr
        assert where in lines[0] and "Free space on that disk" in lines[0]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --------------------------------------------------------------------- damaged images
@pytest.mark.parametrize("inside_fit", [
    False,  # validation off: the first (logged) episode comes from the damaged split, before anything is written
    pytest.param(True, marks=pytest.mark.slow),  # validation on: model.fit meets it (~12 s on an idle VM)
])
def test_a_damaged_image_body_stops_training_with_one_line_and_a_clean_model_dir(tmp_path, config, data_root,
                                                                                 capfd, inside_fit):
    from lite_tf.data.metadataset import records
    from lite_tf.experiment import parse_gin
    from lite_tf.model_dir import ModelDir

    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    path = str(root / "glyphs" / "0.tfrecords")  # a training class; the framing and checksums stay valid
    images = [tf.train.Example.FromString(r.numpy()).features.feature["image"].bytes_list.value[0]
              for r in tf.data.TFRecordDataset(path)]
    images[2] = images[2][:20] + b"garbage" * 30  # a JPEG header, then rubbish
    records.write_class_file(path, images, 0)
    model_dir = tmp_path / "run"
    bindings = ["Training.epochs = 1", "Training.episodes_per_epoch = 1", "Training.validation_episodes = 1",
                f"Training.validate_every = {int(inside_fit)}"]
    capfd.readouterr()
    with pytest.raises(DataError) as error:
        train(model_dir, config, bindings, str(root))
    assert str(error.value) == (
        f"Training stopped: Image(s) that could not be decoded (damaged image data) in the decoded-image cache; "
        f"datasets: dataset glyphs ({root / 'glyphs'}); class ids: 0; record numbers in their class file: 2. Delete "
        "that class file and rerun lite_tf_convert with the same flags to rewrite it from the source images (or "
        "replace the data), then rerun the same command; it resumes from the start, as no epoch had finished.")
    assert "Input file read error" not in capfd.readouterr().err  # libjpeg's own line is dropped
    assert os.path.exists(model_dir / "experiment.gin") == inside_fit  # fit runs after the model dir is written
    assert not os.path.exists(model_dir / "checkpoints") and not os.path.exists(model_dir / "best.weights.h5")
    ModelDir(str(model_dir)).check(parse_gin([config], bindings))  # a rerun with the same command is accepted


# ------------------------------------------------------------------ converter messages
def test_converter_messages_carry_no_object_reprs_or_op_dumps(tmp_path):
    from lite_tf.data.metadataset import records
    from lite_tf.data.writing import check, images
    from lite_tf.data.writing.errors import BadImageError

    with pytest.raises(BadImageError) as error:
        images.prepare(b"not an image", "birds/ant/1.png")
    assert str(error.value) == "birds/ant/1.png is not a readable image: cannot identify image file (not a format " \
                               "PIL knows)"
    path = str(tmp_path / "0.tfrecords")
    records.write_class_file(path, [b"\xff\xd8" + bytes(200)] * 3, 0)
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF  # inside the first record's data: its checksum no longer matches
    open(path, "wb").write(bytes(data))
    with pytest.raises(check.ClassFileProblem) as error:
        check.scan_class_file(path, 0)
    assert str(error.value) == "is corrupt (a record checksum does not match): corrupted record at 12"
