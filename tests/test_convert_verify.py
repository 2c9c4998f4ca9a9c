"""The converter verifies what it keeps: damaged or stale class files are rewritten on a rerun,
--verify reports them without writing, and the image options (png, one channel, target size)."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import check, convert
from lite_tf.data.writing import manifest as manifest_lib
from tests.convert_helpers import make_folder, noise, save, touch_later

SPLIT = dict(split_fractions=(0.6, 0.2, 0.2), seed=0, progress=False, workers=1)


def _convert(root, out, **kwargs):
    return convert.convert_image_folder(root, out, **{**SPLIT, **kwargs})


def _stored(path):
    """The image bytes of every record of a class file, in order."""
    import tensorflow as tf

    return [records.parse_example(r)[0].numpy() for r in tf.data.TFRecordDataset(str(path))]


def _mtimes(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


@pytest.fixture
def converted(tmp_path):
    root = tmp_path / "zoo"
    make_folder(root)
    _convert(root, tmp_path / "out")
    return root, tmp_path / "out" / "zoo"


def _damage(path, how):
    data = path.read_bytes()
    offsets, lengths = records.record_index(str(path))
    if how == "last record cut off":  # still valid TFRecord framing: only the count shows it
        path.write_bytes(data[:offsets[-1] - 12])
        return "holds 2 records, expected 3"
    if how == "cut mid-record":
        path.write_bytes(data[:offsets[-1] + 5])
        return f"is truncated: record 2 at byte {offsets[-1] - 12} needs {lengths[-1]} data bytes"
    if how == "flipped data byte":
        middle = int(offsets[1] + lengths[1] // 2)
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
        return "is corrupt (a record checksum does not match)"
    if how == "deleted":
        path.unlink()
        return "is missing"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["last record cut off", "cut mid-record", "flipped data byte", "deleted"])
def test_damaged_class_file_is_rewritten(converted, how):
    root, folder = converted
    target = folder / "1.tfrecords"
    original = target.read_bytes()
    expected = _damage(target, how)
    others = {n: t for n, t in _mtimes(folder).items() if n.endswith(".tfrecords") and n != "1.tfrecords"}
    report = _convert(root, folder.parent)
    assert not report.already_complete
    assert (report.written, report.resumed) == (1, 4)
    assert len(report.rewritten) == 1 and report.rewritten[0][0] == str(target)
    assert report.rewritten[0][1].startswith(expected), report.rewritten[0][1]
    assert "rewrote 1 damaged or stale file(s), e.g. 1.tfrecords" in report.summary()
    assert target.read_bytes() == original
    assert {n: t for n, t in _mtimes(folder).items() if n in others} == others  # the good files were kept
    assert _convert(root, folder.parent).already_complete


def test_rerun_of_a_good_set_writes_nothing(converted):
    root, folder = converted
    before = _mtimes(folder)
    report = _convert(root, folder.parent)
    assert report.already_complete and report.resumed == 5 and report.written == 0
    assert "already complete: 5 class files verified, nothing written" in report.summary()
    assert _mtimes(folder) == before


def test_changed_source_file_makes_its_class_stale(converted):
    root, folder = converted
    spec = spec_lib.load_spec(folder)
    class_id = next(c for c, n in spec.class_names.items() if n == "cat")
    save(root / "cat" / "1.png", noise(999))
    touch_later(root / "cat" / "1.png")
    before = _mtimes(folder)
    report = _convert(root, folder.parent)
    assert report.rewritten == [(str(folder / f"{class_id}.tfrecords"), "is stale: its source files changed since "
                                 "it was written (size or modification time)")]
    changed = sorted(n for n, t in _mtimes(folder).items() if before.get(n) != t)
    assert changed == sorted([f"{class_id}.tfrecords", spec_lib.SPEC_FILE, manifest_lib.MANIFEST_FILE])
    _convert(root, folder.parent.parent / "fresh")  # the rewritten file is what a fresh run writes
    fresh = folder.parent.parent / "fresh" / "zoo" / f"{class_id}.tfrecords"
    assert (folder / f"{class_id}.tfrecords").read_bytes() == fresh.read_bytes()


def test_skipped_image_fixed_in_place_is_added(tmp_path):
    root = tmp_path / "zoo"
    make_folder(root)
    (root / "dog" / "9.png").write_bytes(b"\x89PNG not really")
    report = _convert(root, tmp_path / "out", skip_bad_images=True)
    assert [os.path.basename(p) for p, _ in report.skipped_images] == ["9.png"]
    folder = tmp_path / "out" / "zoo"
    spec = spec_lib.load_spec(folder)
    dog = next(c for c, n in spec.class_names.items() if n == "dog")
    assert spec.images_per_class[dog] == 3
    save(root / "dog" / "9.png", noise(77))  # fixed in place: same name, new content
    report = _convert(root, tmp_path / "out", skip_bad_images=True)
    assert report.written == 1 and not report.skipped_images
    assert spec_lib.load_spec(folder).images_per_class[dog] == 4
    assert records.count_records(str(folder / f"{dog}.tfrecords"), verify_checksums=True) == 4


def test_class_file_without_manifest_entry_is_rewritten(converted):
    """As after a kill between a class file's rename and the manifest update (no spec yet)."""
    root, folder = converted
    manifest = manifest_lib.read_manifest(folder)
    del manifest["written"]["2"]
    manifest_lib.write_manifest(folder, manifest)
    (folder / spec_lib.SPEC_FILE).unlink()
    report = _convert(root, folder.parent)
    assert report.rewritten == [(str(folder / "2.tfrecords"),
                                 "has no manifest entry (written by a run that was interrupted)")]
    assert manifest_lib.class_entry(manifest_lib.read_manifest(folder), 2)["records"] == 3


def test_damaged_spec_is_rewritten(converted):
    root, folder = converted
    spec_path = folder / spec_lib.SPEC_FILE
    good = spec_path.read_text()
    spec_path.write_text(good.replace('"images_per_class": {\n    "0": 3', '"images_per_class": {\n    "0": 30'))
    assert spec_path.read_text() != good
    report = _convert(root, folder.parent)
    assert report.rewritten == [(str(spec_path), "is missing or does not match the class files")]
    assert report.written == 0 and spec_path.read_text() == good


# ----------------------------------------------------------------------------- --verify
@pytest.fixture
def run_tool():
    """tools/convert.py's main in this process; returns the exit status (errors: 2, a bad set: 1)."""
    from tests.launch_helpers import run_tool as run_launcher
    from lite_tf.tools import convert as tool

    return lambda *argv: run_launcher(tool, *argv)


def test_verify_good_and_bad_sets(converted, run_tool, capsys):
    root, folder = converted
    assert run_tool("--verify", f"--output_dir={folder.parent}", "--noprogress") == 0
    assert capsys.readouterr().out == f"verify: {folder}: OK, 5 class files, 15 records verified.\n"
    assert run_tool("--verify", f"--image_folder={root}", f"--output_dir={folder.parent}",
                    "--split_fractions=0.6,0.2,0.2") == 0
    _damage(folder / "0.tfrecords", "last record cut off")
    _damage(folder / "3.tfrecords", "flipped data byte")
    before = {n: (folder / n).read_bytes() for n in os.listdir(folder)}
    capsys.readouterr()
    assert run_tool("--verify", f"--output_dir={folder.parent}", "--name=zoo") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"verify: {folder / '0.tfrecords'}: holds 2 records, expected 3"
    assert err[1].startswith(f"verify: {folder / '3.tfrecords'}: is corrupt (a record checksum does not match)")
    assert err[2] == f"verify: {folder}: 2 problem(s) found; rerun the converter to rewrite the bad class files."
    assert len(err) == 3
    # With the input flags it also finds a class whose source files changed since.
    spec = spec_lib.load_spec(folder)
    cat = next(c for c, n in spec.class_names.items() if n == "cat")
    touch_later(root / "cat" / "0.png")
    assert run_tool("--verify", f"--image_folder={root}", f"--output_dir={folder.parent}",
                    "--split_fractions=0.6,0.2,0.2") == 1
    err = capsys.readouterr().err
    assert f"verify: {folder / f'{cat}.tfrecords'}: is stale: its source files changed since it was written" in err
    assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == before  # nothing written


def test_verify_names_a_missing_spec(tmp_path, run_tool, capsys):
    folder = tmp_path / "zoo"
    os.makedirs(folder)
    assert run_tool("--verify", f"--output_dir={tmp_path}", "--name=zoo") == 1
    assert capsys.readouterr().err.splitlines()[0] == f"verify: {folder / spec_lib.SPEC_FILE}: is missing"


# ----------------------------------------------------------------------------- image options
def _decode3(data: bytes) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def test_png_is_lossless(tmp_path):
    root = tmp_path / "zoo"
    originals = make_folder(root)
    rgba = np.concatenate([noise(5), np.full((12, 10, 1), 255, np.uint8)], -1)
    rgba[:2, :2, 3] = 0  # transparent corner: composited on white
    save(root / "ant" / "9.png", rgba)
    save(root / "bee" / "9.bmp", noise(6), "BMP")
    _convert(root, tmp_path / "out", image_format="png")
    folder = tmp_path / "out" / "zoo"
    spec = spec_lib.load_spec(folder)
    for class_id, name in spec.class_names.items():
        stored = _stored(spec.class_file(class_id))
        for data, original in zip(stored, originals[name]):
            assert np.array_equal(_decode3(data), original)
        if name == "ant":
            expected = rgba[..., :3].copy()
            expected[:2, :2] = 255
            assert np.array_equal(_decode3(stored[3]), expected)
        if name == "bee":
            assert Image.open(io.BytesIO(stored[3])).format == "PNG"
            assert np.array_equal(_decode3(stored[3]), noise(6))
    # The default stays JPEG (lossy): the same noise does not survive it.
    _convert(root, tmp_path / "jpeg")
    jpeg = _stored(spec_lib.load_spec(tmp_path / "jpeg" / "zoo").class_file(0))
    assert Image.open(io.BytesIO(jpeg[0])).format == "JPEG"
    assert np.abs(_decode3(jpeg[0]).astype(int) - originals[spec.class_names[0]][0]).mean() > 5


def test_greyscale_stays_one_channel(tmp_path):
    import tensorflow as tf

    from lite_tf.data.metadataset import pipeline

    root = tmp_path / "glyphs"
    originals = make_folder(root, per_class=4, channels=1)
    colour = noise(8, 16, 16)
    save(root / "ant" / "9.jpg", colour, "JPEG")
    _convert(root, tmp_path / "out", image_format="png", channels=1)
    folder = tmp_path / "out" / "glyphs"
    spec = spec_lib.load_spec(folder)
    for class_id, name in spec.class_names.items():
        stored = _stored(spec.class_file(class_id))
        for data, original in zip(stored, originals[name]):
            image = Image.open(io.BytesIO(data))
            assert image.mode == "L" and np.array_equal(np.asarray(image), original)
        if name == "ant":
            grey = Image.open(io.BytesIO(stored[4]))
            assert grey.mode == "L"
            expected = np.asarray(Image.open(root / "ant" / "9.jpg").convert("L"))
            assert np.array_equal(np.asarray(grey), expected)
    # The pipeline still hands the model 3 equal channels.
    dataset = pipeline.make_episode_dataset(str(folder), "TRAIN", image_size=12, image_dtype=tf.uint8,
                                            sampler_kwargs=dict(num_ways=2, num_support=1, num_query=1))
    episode = next(iter(dataset))
    images = episode["support_images"].numpy()
    assert images.shape[-1] == 3
    assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])


def test_small_images_warn_once(tmp_path, run_tool, capsys):
    root = tmp_path / "tiny"
    make_folder(root, height=8, width=8)
    save(root / "ant" / "big.png", noise(3, 40, 48))
    status = run_tool(f"--image_folder={root}", f"--output_dir={tmp_path / 'out'}", "--image_format=png",
                      "--target_size=32", "--split_fractions=0.6,0.2,0.2", "--noprogress")
    assert status == 0
    expected = ("convert: warning: Dataset 'tiny': 15 of 16 images are smaller than the target size 32 px "
                "(smallest 8x8 px); training upsamples them.\n")
    assert capsys.readouterr().err == expected
    # A rerun (nothing to write) measures the kept records and says the same.
    assert run_tool(f"--image_folder={root}", f"--output_dir={tmp_path / 'out'}", "--image_format=png",
                    "--target_size=32", "--split_fractions=0.6,0.2,0.2", "--noprogress") == 0
    out, err = capsys.readouterr()
    assert "already complete" in out and err == expected
    report = _convert(root, tmp_path / "out", image_format="png", target_size=8)
    assert report.already_complete and report.warnings == []


def test_scan_reads_sizes_and_labels(converted):
    _, folder = converted
    scan = check.scan_class_file(str(folder / "0.tfrecords"), 0, measure_sizes=True)
    assert scan.records == 3 and scan.sizes == [(10, 12)] * 3
    with pytest.raises(check.ClassFileProblem, match=r"has label 0 in record 0, expected 1"):
        check.scan_class_file(str(folder / "0.tfrecords"), 1)


# ----------------------------------------------------------------------------- bad flags
@pytest.mark.parametrize("argv, message", [
    (["--split_fractions=a,b,c"], "--split_fractions must be numbers TRAIN,VALID,TEST; got a,b,c."),
    (["--split_fractions=0.5,0.5,0.5"], "Split fractions must be three non-negative numbers (TRAIN, VALID, TEST) "
                                        "that sum to 1; got [0.5, 0.5, 0.5]."),
    (["--image_format=gif"], "image_format must be one of ['jpeg', 'png']; got 'gif'."),
    (["--channels=2"], "channels must be 3 (RGB) or 1 (greyscale); got 2."),
    (["--target_size=0"], "--target_size must be a positive number of pixels; got 0."),
    (["--max_side=0"], "max_side must be a positive number of pixels; got 0."),
    (["--jpeg_quality=101"], "jpeg_quality must be an integer in 1..100; got 101."),
    (["--workers=0"], "--workers must be at least 1; got 0."),
    (["--classes_per_pass=-1"], "--classes_per_pass must be 0 (one pass) or positive; got -1."),
    (["--split_file={tmp}/none.txt"], "--split_file={tmp}/none.txt: no such file."),
    (["--superclass_file={tmp}/none.json"], "--superclass_file={tmp}/none.json: no such file."),
    (["--parent_file={tmp}/none.tsv"], "--parent_file={tmp}/none.tsv: no such file."),
    (["--superclass_file={tmp}/zoo/ant/0.png"], "Cannot read hierarchy file {tmp}/zoo/ant/0.png: 'utf-8' codec"),
    (["--split_file={tmp}/zoo/ant/0.png"], "Cannot read split file {tmp}/zoo/ant/0.png: 'utf-8' codec"),
    (["--image_folder={tmp}/none"], "Input folder {tmp}/none does not exist or is not a folder."),
])
def test_every_bad_flag_is_one_line(tmp_path, run_tool, capsys, argv, message):
    make_folder(tmp_path / "zoo")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if not any(a.startswith("--image_folder") for a in argv):
        argv.append(f"--image_folder={tmp_path / 'zoo'}")
    assert run_tool(*argv, f"--output_dir={tmp_path / 'out'}", "--noprogress") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(tmp=tmp_path)), err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_verify_of_nothing_is_one_line(tmp_path, run_tool, capsys):
    assert run_tool("--verify", f"--output_dir={tmp_path / 'none'}") == 2
    assert capsys.readouterr().err == f"error: --output_dir={tmp_path / 'none'}: no such folder.\n"
    assert run_tool("--verify", f"--output_dir={tmp_path}") == 2
    assert capsys.readouterr().err == (f"error: --output_dir={tmp_path} holds no record set (no "
                                       f"{spec_lib.SPEC_FILE}); nothing to verify.\n")


def _tool_lines(stderr: str):
    """stderr without TensorFlow's own start-up log lines (not this tool's output)."""
    noise = ("WARNING: All log messages before absl", "To enable the following instructions")
    return [line for line in stderr.splitlines()
            if line and not line.startswith(noise) and not (line[:1] in "IWE" and line[1:5].isdigit())]


@pytest.mark.parametrize("argv, status, line", [
    (["--channels=abc", "--output_dir=out"], 2,
     "error: flag --channels=abc: invalid literal for int() with base 10: 'abc'"),
    (["--image_folder=a", "--tfds_name=b", "--output_dir=out"], 2,
     "error: Give exactly one input: --image_folder or --tfds_name, not both."),
])
def test_command_line_errors_are_one_line(tmp_path, argv, status, line):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "tools.convert", *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == status
    assert _tool_lines(result.stderr) == [line]
    assert not (tmp_path / "out").exists()


def test_set_from_before_per_class_entries_is_verified_not_rewritten(converted):
    """A manifest of format 1 (no per-class entries): files are checked against the spec and kept."""
    root, folder = converted
    manifest = manifest_lib.read_manifest(folder)
    manifest["format"], manifest["written"] = 1, {}
    manifest_lib.write_manifest(folder, manifest)
    before = {n: t for n, t in _mtimes(folder).items() if n.endswith(".tfrecords")}
    report = _convert(root, folder.parent)
    assert report.already_complete and report.rewritten == []
    assert {n: t for n, t in _mtimes(folder).items() if n.endswith(".tfrecords")} == before
    upgraded = manifest_lib.read_manifest(folder)
    assert upgraded["format"] == manifest_lib.MANIFEST_FORMAT
    assert manifest_lib.class_entry(upgraded, 4) == {"records": 3, "sources": None, "skipped": 0}
