"""lite_tf/data/synthetic/demo.py and tools/make_demo_data.py: flags, idempotency, refusal to mix, atomic and resumable writes."""
import os

import pytest

from lite_tf import atomic
from lite_tf.data.metadataset import records
from lite_tf.data.synthetic import procedural as synthetic
from lite_tf.data.writing import writer
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.synthetic.demo import make_demo_data
from tests.launch_helpers import run_tool as run_launcher

SMALL = dict(image_size=16, classes_per_split=[2, 1, 1], images_per_class=3, seed=0, workers=1, progress=False)


@pytest.fixture
def run_tool():
    """Runs the absl main with the given flags in this process; returns its exit status."""
    from lite_tf.tools import make_demo_data as tool

    return lambda *argv: run_launcher(tool, *argv)


def _mtimes(folder):
    return {name: os.path.getmtime(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


def test_cli_writes_every_source_and_prints_summary(tmp_path, run_tool, capsys):
    status = run_tool(f"--output_dir={tmp_path}", "--image_size=16", "--classes_per_split=3,1,2",
                      "--images_per_class=2", "--workers=1", "--noprogress", "--sources=glyphs,textures")
    assert status == 0
    for source in ("glyphs", "textures"):
        spec = spec_lib.load_spec(tmp_path / source)
        assert [spec.num_classes(s) for s in spec_lib.SPLITS] == [3, 1, 2]
        assert all(records.count_records(spec.class_file(c)) == 2 for c in range(6))
    assert not (tmp_path / "shapes").exists()
    out = capsys.readouterr().out
    assert "Dataset 'glyphs'" in out and "2 source(s), 24 images" in out


def test_second_run_skips_complete_sources(tmp_path):
    make_demo_data(tmp_path, ["glyphs", "shapes"], **SMALL)
    before = {s: _mtimes(tmp_path / s) for s in ("glyphs", "shapes")}
    reports = make_demo_data(tmp_path, ["glyphs", "shapes"], **SMALL)
    assert all(r.already_complete and r.written == 0 for r in reports)
    assert {s: _mtimes(tmp_path / s) for s in ("glyphs", "shapes")} == before


def test_conflict_in_any_source_writes_nothing(tmp_path, run_tool, capsys):
    make_demo_data(tmp_path, ["shapes"], **{**SMALL, "image_size": 24})
    status = run_tool(f"--output_dir={tmp_path}", "--image_size=16", "--classes_per_split=2,1,1",
                      "--images_per_class=3", "--workers=1", "--noprogress", "--sources=glyphs,shapes")
    assert status == 2
    assert "Refusing to mix datasets" in capsys.readouterr().err
    assert not (tmp_path / "glyphs").exists()  # checked before the first source was written
    assert spec_lib.load_spec(tmp_path / "shapes").images_per_class[0] == 3


def test_refuses_folder_with_foreign_records(tmp_path):
    os.makedirs(tmp_path / "glyphs")
    records.write_class_file(records.class_file_path(tmp_path / "glyphs", 0), [b"x"], 0)
    with pytest.raises(writer.DatasetWriteError, match=r"0.tfrecords .* not written by lite_tf"):
        make_demo_data(tmp_path, ["glyphs"], **SMALL)


def test_interrupted_run_leaves_no_spec_and_resumes(tmp_path, monkeypatch):
    real = synthetic.class_images
    calls = []

    def flaky(source, seed, class_id, *args, **kwargs):
        calls.append(class_id)
        if class_id == 2 and len(calls) < 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while class 2 was rendering
        return real(source, seed, class_id, *args, **kwargs)

    monkeypatch.setattr(synthetic, "class_images", flaky)
    folder = tmp_path / "glyphs"
    with pytest.raises(KeyboardInterrupt):
        make_demo_data(tmp_path, ["glyphs"], **SMALL)
    assert not (folder / spec_lib.SPEC_FILE).exists()
    assert sorted(os.listdir(folder)) == ["0.tfrecords", "1.tfrecords", writer.MANIFEST_FILE]
    kept = _mtimes(folder)

    report = make_demo_data(tmp_path, ["glyphs"], **SMALL)[0]
    assert (report.resumed, report.written) == (2, 2)
    assert _mtimes(folder)["0.tfrecords"] == kept["0.tfrecords"]
    spec = spec_lib.load_spec(folder)
    assert all(spec.images_per_class[c] == records.count_records(spec.class_file(c)) == 3 for c in range(4))
    # The resumed dataset is byte-identical to one written in a single run.
    monkeypatch.setattr(synthetic, "class_images", real)
    make_demo_data(tmp_path / "fresh", ["glyphs"], **SMALL)
    for c in range(4):
        fresh = tmp_path / "fresh" / "glyphs" / f"{c}.tfrecords"
        assert (folder / f"{c}.tfrecords").read_bytes() == fresh.read_bytes()


def test_stale_temporary_files_are_removed_on_resume(tmp_path):
    folder = tmp_path / "glyphs"
    plan = synthetic.plan_synthetic_dataset(tmp_path, "glyphs", 16, (2, 1, 1), 3)
    os.makedirs(folder)
    atomic.write_json(str(folder / writer.MANIFEST_FILE), plan.manifest, indent=2)
    (folder / ".tmp-0.tfrecords-abc").write_bytes(b"half a file")
    assert plan.state() == "partial"
    make_demo_data(tmp_path, ["glyphs"], **SMALL)
    assert not any(name.startswith(".tmp-") for name in os.listdir(folder))
    assert plan.state() == "complete"


def test_bad_flags(tmp_path, run_tool, capsys):
    assert run_tool(f"--output_dir={tmp_path}", "--sources=glyphs,pictures", "--noprogress") == 2
    assert "Unknown synthetic source 'pictures'" in capsys.readouterr().err
    assert run_tool(f"--output_dir={tmp_path}", "--classes_per_split=2,1", "--noprogress") == 2
    assert "classes_per_split" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_missing_class_file_is_rewritten_and_files_are_readable(tmp_path):
    make_demo_data(tmp_path, ["shapes"], **SMALL)
    folder = tmp_path / "shapes"
    original = (folder / "2.tfrecords").read_bytes()
    os.remove(folder / "2.tfrecords")
    plan = synthetic.plan_synthetic_dataset(tmp_path, "shapes", 16, (2, 1, 1), 3)
    assert plan.state() == "partial"
    report = make_demo_data(tmp_path, ["shapes"], **SMALL)[0]
    assert (report.resumed, report.written) == (3, 1)
    assert (folder / "2.tfrecords").read_bytes() == original
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(folder):
        assert os.stat(folder / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_duplicate_class_names_are_refused(tmp_path):
    jobs = [writer.ClassJob("a", "TRAIN", lambda: [b"x", b"y"]), writer.ClassJob("a", "TEST", lambda: [b"x", b"y"])]
    with pytest.raises(writer.DatasetWriteError, match=r"\['a'\] appear more than once"):
        writer.write_dataset(tmp_path / "d", "d", jobs, {}, progress=False)
    assert not (tmp_path / "d").exists()
