"""Dataset specs: every real Meta-Dataset spec loads with the right class counts and round-trips."""
import glob
import json
import os

import pytest

from lite_tf.data.metadataset import spec as S
from tests.helpers import meta_dataset_spec_dir

SPEC_DIR = meta_dataset_spec_dir()
SPEC_FILES = sorted(glob.glob(os.path.join(SPEC_DIR, "*_dataset_spec.json")))

EXPECTED = {  # TRAIN/VALID/TEST class counts of the real benchmark
    "aircraft": (70, 15, 15), "cu_birds": (140, 30, 30), "dtd": (33, 7, 7), "fungi": (994, 200, 200),
    "ilsvrc_2012": (712, 158, 130), "ilsvrc_2012_v2": (1000, 0, 0), "mscoco": (0, 40, 40),
    "omniglot": (883, 81, 659), "quickdraw": (241, 52, 52), "traffic_sign": (0, 0, 43),
    "vgg_flower": (71, 15, 16),
}

pytestmark = pytest.mark.skipif(not SPEC_FILES, reason="real Meta-Dataset specs not available")


@pytest.mark.parametrize("file", SPEC_FILES, ids=os.path.basename)
def test_real_spec_loads_and_round_trips(file, tmp_path):
    spec = S.load_spec(file, records_dir=str(tmp_path))
    assert spec.path == str(tmp_path)
    assert tuple(spec.num_classes(s) for s in S.SPLITS) == EXPECTED[spec.name]
    all_ids = spec.classes(S.TRAIN) + spec.classes(S.VALID) + spec.classes(S.TEST)
    assert all_ids == list(range(len(all_ids)))
    assert all(spec.images_per_class[c] > 0 for c in all_ids)
    original = json.load(open(file))
    original["path"] = str(tmp_path)
    assert spec.to_json_dict() == original  # same schema, same values: the original reader loads it
    written = S.write_spec(spec, str(tmp_path / "out"))
    again = S.load_spec(str(tmp_path / "out"))
    assert again.path == str(tmp_path / "out") and written.endswith("dataset_spec.json")
    assert again.images_per_class == spec.images_per_class and type(again) is type(spec)


def test_omniglot_alphabets():
    spec = S.load_spec(os.path.join(SPEC_DIR, "omniglot_dataset_spec.json"))
    assert isinstance(spec, S.BiLevelDatasetSpec)
    assert [len(spec.superclasses(s)) for s in S.SPLITS] == [25, 5, 20]
    train = [c for a in spec.superclasses(S.TRAIN) for c in spec.classes_of_superclass(a)]
    assert train == spec.classes(S.TRAIN)
    assert spec.classes_of_superclass(25)[0] == 883


def test_imagenet_dag():
    spec = S.load_spec(os.path.join(SPEC_DIR, "ilsvrc_2012_dataset_spec.json"))
    assert isinstance(spec, S.HierarchicalDatasetSpec)
    for split in S.SPLITS:
        leaves = spec.leaves_under(split)
        roots = [n["wn_id"] for n in spec.split_subgraphs[split] if not n["parents_ids"]]
        assert len(roots) == 1 and leaves[roots[0]] == spec.classes(split)
    assert spec.class_names[0] == "n01440764" and spec.class_id_of("n01440764") == 0
    small = spec.with_images_per_class({c: 3 for c in spec.images_per_class}, path="/x")
    data = small.to_json_dict()
    root = spec.split_subgraphs[S.TRAIN][0]["wn_id"]
    assert data["images_per_class"]["TRAIN"][root] == 3 * 712 and small.path == "/x"


def test_make_flat_spec_and_errors(tmp_path):
    spec = S.make_flat_spec("toy", str(tmp_path), {"TRAIN": [0, 1, 2], "VALID": [3], "TEST": 2},
                            {c: 4 for c in range(6)}, {c: f"c{c}" for c in range(6)})
    assert spec.classes("train") == [0, 1, 2] and spec.classes("test") == [4, 5]
    S.write_spec(spec, str(tmp_path))
    assert S.load_spec(str(tmp_path)).to_json_dict() == spec.to_json_dict()
    with pytest.raises(S.SpecError, match="contiguous"):
        S.make_flat_spec("toy", "/x", {"TRAIN": [1, 2], "VALID": [], "TEST": []}, {1: 2, 2: 2})
    with pytest.raises(S.SpecError, match=r"no count for class id\(s\) \[5\]"):
        S.make_flat_spec("toy", "/x", {"TRAIN": 6, "VALID": 0, "TEST": 0}, {c: 4 for c in range(5)})
    with pytest.raises(S.SpecError, match="Unknown split"):
        spec.classes("training")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset_spec.json").write_text('{"name": "b", "__class__": "DatasetSpecification"}')
    with pytest.raises(S.SpecError, match="missing key 'classes_per_split'"):
        S.load_spec(str(bad))
    with pytest.raises(S.SpecError, match="No dataset specification"):
        S.load_spec(str(tmp_path / "nowhere"))
