"""Two-level and hierarchical specs written from a user's hierarchy, read back by lite_tf's reader and
sampled with the hierarchy; and the ImageNet-v2 spec as Meta-Dataset's TFDS builder rewrites it."""
import json
import os

import pytest

from lite_tf.data.metadataset import sampling
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import convert, hierarchy
from tests.convert_helpers import make_folder
from tests.helpers import meta_dataset_spec_dir

MD_SPECS = meta_dataset_spec_dir()
needs_specs = pytest.mark.skipif(not os.path.isdir(MD_SPECS), reason=f"no Meta-Dataset specs at {MD_SPECS}")

ALPHABETS = {"greek": ["alpha", "beta", "gamma", "delta", "eps", "zeta"],
             "latin": ["a", "b", "c", "d", "e"],
             "runic": ["fehu", "uruz", "thurs", "ansuz", "raido", "kaun"],
             "cyrillic": ["be", "ve", "ge", "de", "zhe"]}


def _real_spec(name):
    with open(os.path.join(MD_SPECS, f"{name}_dataset_spec.json")) as f:
        return json.load(f)


@pytest.fixture
def alphabet_folder(tmp_path):
    classes = [c for members in ALPHABETS.values() for c in members]
    root = tmp_path / "chars"
    make_folder(root, classes, per_class=2, height=8, width=8)
    superclass_file = tmp_path / "alphabets.json"
    superclass_file.write_text(json.dumps({c: a for a, members in ALPHABETS.items() for c in members}))
    split_file = tmp_path / "split.txt"
    split_file.write_text("train:\nrunic\ngreek\nvalid:\nlatin\ntest:\ncyrillic\n")
    return root, superclass_file, split_file


@needs_specs
def test_two_level_round_trip(tmp_path, alphabet_folder):
    root, superclass_file, split_file = alphabet_folder
    convert.convert_image_folder(root, tmp_path / "out", superclass_file=str(superclass_file),
                                 split_file=str(split_file), progress=False, workers=1)
    folder = tmp_path / "out" / "chars"
    with open(folder / spec_lib.SPEC_FILE) as f:
        written = json.load(f)
    omniglot = _real_spec("omniglot")
    assert written["__class__"] == omniglot["__class__"] == "BiLevelDatasetSpecification"
    assert sorted(written) == sorted(omniglot)  # the same keys Meta-Dataset's reader reads
    spec = spec_lib.load_spec(folder)
    assert isinstance(spec, spec_lib.BiLevelDatasetSpec)
    assert spec.superclass_names == {0: "greek", 1: "runic", 2: "latin", 3: "cyrillic"}
    assert spec.superclasses_per_split == {spec_lib.TRAIN: 2, spec_lib.VALID: 1, spec_lib.TEST: 1}
    for superclass, name in spec.superclass_names.items():
        members = [spec.class_names[c] for c in spec.classes_of_superclass(superclass)]
        assert members == sorted(ALPHABETS[name])
    assert spec.classes("TRAIN") == list(range(12)) and spec.num_classes("TEST") == 5
    # Episodes drawn with the hierarchy keep to one alphabet.
    sampler = sampling.EpisodeSampler(spec, "TRAIN", num_ways=3, num_support=1, num_query=1, seed=0)
    alphabets = set()
    for _ in range(20):
        episode = sampler.sample()
        owners = {spec.superclass_names[s] for s in spec.superclasses("TRAIN")
                  for c in episode.class_ids if c in spec.classes_of_superclass(s)}
        assert len(owners) == 1
        alphabets |= owners
    assert alphabets == {"greek", "runic"}


PARENTS = """# child<TAB>parent
cat\tfeline
lion\tfeline
tiger\tfeline
lynx\tfeline
puma\tfeline
wolf\tcanine
fox\tcanine
jackal\tcanine
dingo\tcanine
coyote\tcanine
feline\tmammal
canine\tmammal
bat\tmammal
bat\tflyer
crow\tflyer
owl\tflyer
hawk\tflyer
kite\tflyer
wren\tflyer
mammal\tanimal
flyer\tanimal
"""


@pytest.fixture
def animal_folder(tmp_path):
    classes = ["cat", "lion", "tiger", "lynx", "puma", "wolf", "fox", "jackal", "dingo", "coyote",
               "bat", "crow", "owl", "hawk", "kite", "wren"]
    root = tmp_path / "animals"
    make_folder(root, classes, per_class=2, height=8, width=8)
    parent_file = tmp_path / "parents.tsv"
    parent_file.write_text(PARENTS)
    split_file = tmp_path / "split.json"  # internal nodes stand for the classes under them
    split_file.write_text(json.dumps({"train": ["feline", "bat", "crow", "owl", "hawk", "kite", "wren"],
                                      "valid": [], "test": ["canine"]}))
    return root, parent_file, split_file, classes


@needs_specs
def test_hierarchical_round_trip(tmp_path, animal_folder):
    root, parent_file, split_file, classes = animal_folder
    convert.convert_image_folder(root, tmp_path / "out", parent_file=str(parent_file), split_file=str(split_file),
                                 progress=False, workers=1)
    folder = tmp_path / "out" / "animals"
    with open(folder / spec_lib.SPEC_FILE) as f:
        written = json.load(f)
    imagenet = _real_spec("ilsvrc_2012")
    assert written["__class__"] == imagenet["__class__"] == "HierarchicalDatasetSpecification"
    assert sorted(written) == sorted(imagenet)
    assert {sorted(node) == sorted(imagenet["split_subgraphs"]["TRAIN"][0])
            for nodes in written["split_subgraphs"].values() for node in nodes} == {True}
    # Meta-Dataset's reader needs disjoint node sets, each closed under its own edges.
    node_sets = {s: {n["wn_id"] for n in nodes} for s, nodes in written["split_subgraphs"].items()}
    assert not (node_sets["TRAIN"] & node_sets["TEST"]) and node_sets["VALID"] == set()
    assert node_sets["TEST"] == {"canine", "coyote", "dingo", "fox", "jackal", "wolf"}
    for split, nodes in written["split_subgraphs"].items():
        for node in nodes:
            assert set(node["children_ids"]) <= node_sets[split] and set(node["parents_ids"]) <= node_sets[split]
    train = {n["wn_id"]: n for n in written["split_subgraphs"]["TRAIN"]}
    assert train["mammal"]["children_ids"] == ["bat", "feline"]  # canine went to TEST
    assert train["bat"]["parents_ids"] == ["flyer", "mammal"]
    assert written["images_per_class"]["TRAIN"]["animal"] == 2 * 11  # every TRAIN leaf once (bat too)
    assert written["images_per_class"]["TRAIN"]["flyer"] == 2 * 6
    spec = spec_lib.load_spec(folder)
    assert isinstance(spec, spec_lib.HierarchicalDatasetSpec)
    train_names = [spec.class_names[c] for c in spec.classes("TRAIN")]
    assert train_names == sorted(train_names) and len(train_names) == 11
    assert spec.leaves_under("TRAIN")["feline"] == sorted(spec.class_id_of(c) for c in
                                                          ["cat", "lion", "tiger", "lynx", "puma"])
    # Episodes drawn with the hierarchy take the leaves of one node.
    sampler = sampling.EpisodeSampler(spec, "TRAIN", num_support=1, num_query=1, min_ways=5, seed=1)
    spans = [set(ids) for ids in spec.leaves_under("TRAIN").values() if len(ids) >= 5]
    seen = set()
    for _ in range(30):
        chosen = set(sampler.sample().class_ids.tolist())
        assert any(chosen <= span for span in spans)
        seen.add(frozenset(chosen))
    assert len(seen) > 1
    test = sampling.EpisodeSampler(spec, "TEST", num_ways=5, num_support=1, num_query=1, seed=0).sample()
    assert sorted(spec.class_names[c] for c in test.class_ids) == ["coyote", "dingo", "fox", "jackal", "wolf"]


@pytest.mark.parametrize("text, message", [
    ("cat\tfeline\nfeline\tcat\n", "class(es) ['cat'] are parents of other nodes"),
    ("cat\tfeline\nfeline\tmammal\nmammal\tfeline\n", "has a cycle: feline -> mammal -> feline"),
    ("cat feline\n", "line 1: expected 'child<TAB>parent', got 'cat feline'"),
    ("{\"cat\": 3}", "entry 'cat': child and parent must be non-empty names"),
    ("cat\tcat\n", "line 1: 'cat' is its own parent"),
])
def test_bad_parent_file(tmp_path, text, message):
    path = tmp_path / "parents.txt"
    path.write_text(text)
    with pytest.raises(convert.ConvertError) as error:
        hierarchy.check_dag(hierarchy.read_parent_map(str(path)), ["cat"], str(path))
    assert message in str(error.value) and str(path) in str(error.value)


def test_bad_superclass_file(tmp_path, alphabet_folder):
    root, superclass_file, _ = alphabet_folder
    mapping = json.loads(superclass_file.read_text())
    del mapping["alpha"]
    superclass_file.write_text(json.dumps(mapping))
    with pytest.raises(convert.ConvertError, match=r"gives no superclass for 1 class\(es\): \['alpha'\]"):
        convert.plan_image_folder(root, tmp_path / "out", superclass_file=str(superclass_file))
    mapping["alpha"] = ["greek", "latin"]
    superclass_file.write_text(json.dumps(mapping))
    with pytest.raises(convert.ConvertError, match=r"gives class 'alpha' 2 superclasses \['greek', 'latin'\]"):
        convert.plan_image_folder(root, tmp_path / "out", superclass_file=str(superclass_file))
    with pytest.raises(convert.ConvertError, match="at most one hierarchy"):
        convert.plan_image_folder(root, tmp_path / "out", superclass_file=str(superclass_file),
                                  parent_file=str(superclass_file))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- ImageNet v2 via TFDS
def _tfds_rewritten_v2():
    """ilsvrc_2012_v2 as Meta-Dataset's TFDS builder rewrites it: v1's class_names (v1's class order)."""
    v2 = _real_spec("ilsvrc_2012_v2")
    v2["class_names"] = _real_spec("ilsvrc_2012")["class_names"]
    return v2


@needs_specs
def test_tfds_rewritten_imagenet_v2_spec_loads_and_samples():
    data = _tfds_rewritten_v2()
    assert data["class_names"]["151"] == "n02165105"  # the case that used to fail
    spec = spec_lib.spec_from_json_dict(data, "rewritten v2", path="/records/ilsvrc_2012_v2")
    assert spec.num_classes("TRAIN") == 1000 and spec.class_names[151] == "n02165105"
    assert spec.class_id_of("n02165105") == 151 and spec.class_id_of("n02085620") == 712
    shipped = spec_lib.spec_from_json_dict(_real_spec("ilsvrc_2012_v2"), "v2", path="/records/ilsvrc_2012_v2")
    # Same classes and counts, only numbered differently.
    for wn_id in ("n02165105", "n02085620", "n01440764"):
        assert spec.images_per_class[spec.class_id_of(wn_id)] == shipped.images_per_class[shipped.class_id_of(wn_id)]
    by_node = {n: sorted(spec.class_names[c] for c in ids) for n, ids in spec.leaves_under("TRAIN").items()}
    assert by_node == {n: sorted(shipped.class_names[c] for c in ids) for n, ids in shipped.leaves_under("TRAIN").items()}
    sampler = sampling.EpisodeSampler(spec, "TRAIN", num_support=1, num_query=1, seed=0)
    episode = sampler.sample()
    assert any(set(episode.class_ids.tolist()) <= set(ids) for ids in spec.leaves_under("TRAIN").values())
    # A class_names that does not name the split's leaves is still refused, naming the class.
    data["class_names"]["5"] = data["class_names"]["6"]
    with pytest.raises(spec_lib.SpecError, match=r"class 5 is 'n01498041', which is named twice"):
        spec_lib.spec_from_json_dict(data, "bad")
    v1 = _real_spec("ilsvrc_2012")
    v1["class_names"]["0"], v1["class_names"]["800"] = v1["class_names"]["800"], v1["class_names"]["0"]
    with pytest.raises(spec_lib.SpecError, match=r"ids 0..711.*class 0 is 'n02107683', which is not a leaf"):
        spec_lib.spec_from_json_dict(v1, "bad")


def test_split_that_loses_its_hierarchy_is_named(tmp_path, animal_folder, caplog):
    root, parent_file, _, _ = animal_folder
    split_file = tmp_path / "leaves.json"  # canine's classes split across TRAIN and TEST: canine stays in TRAIN
    split_file.write_text(json.dumps({"train": ["cat", "lion", "tiger", "wolf", "fox"], "test": ["jackal", "dingo"]}))
    plan = convert.plan_image_folder(root, tmp_path / "out", parent_file=str(parent_file), split_file=str(split_file))
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith(f"{parent_file}: split TEST keeps no node of the hierarchy above its classes")
               for m in messages), messages
    assert not any("split TRAIN" in m for m in messages)
    spec = plan.make_spec("animals", str(tmp_path), {0: "cat", 1: "fox", 2: "lion", 3: "tiger", 4: "wolf",
                                                     5: "dingo", 6: "jackal"}, {i: 2 for i in range(7)})
    assert sorted(spec.graph("TEST")) == ["dingo", "jackal"]
    assert spec.leaves_under("TRAIN")["canine"] == [1, 4]
