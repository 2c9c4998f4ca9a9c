"""Mock TFDS data for the VTAB tests: real split sizes written as metadata, and tiny learnable
datasets (a hand-written example generator) whose splits have the sizes the test asks for."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# TFDS split sizes of the prepared datasets (the TFDS catalog), keyed by TFDS name without version.
SPLIT_SIZES = {
    "caltech101": {"train": 3060, "test": 6084},
    "cifar100": {"train": 50000, "test": 10000},
    "oxford_flowers102": {"train": 1020, "validation": 1020, "test": 6149},
    "oxford_iiit_pet": {"train": 3680, "test": 3669},
    "sun397/tfds": {"train": 76128, "validation": 10875, "test": 21750},
    "svhn_cropped": {"train": 73257, "test": 26032, "extra": 531131},
    "diabetic_retinopathy_detection/btgraham-300": {"train": 35126, "validation": 10906, "test": 42670},
    "diabetic_retinopathy_detection/original": {"train": 35126, "validation": 10906, "test": 42670},
    "eurosat/rgb": {"train": 27000},
    "resisc45": {"train": 31500},
    "patch_camelyon": {"train": 262144, "validation": 32768, "test": 32768},
    "clevr": {"train": 70000, "validation": 15000, "test": 15000},
    "dmlab": {"train": 65550, "validation": 22628, "test": 22735},
    "dsprites": {"train": 737280},
    "smallnorb": {"train": 24300, "test": 24300},
    "kitti": {"train": 6347, "validation": 423, "test": 711},
}


def write_metadata(data_dir: str, dataset: str, sizes: dict) -> str:
    """Writes dataset_info.json (with ``sizes``) for ``dataset`` as if it had been prepared."""
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder(dataset, data_dir=data_dir)
    info = builder.info
    info.set_splits(splits_lib.SplitDict([splits_lib.SplitInfo(name=name, shard_lengths=[count], num_bytes=0)
                                          for name, count in sizes.items()]))
    os.makedirs(builder.data_dir, exist_ok=True)
    info.write_to_directory(builder.data_dir)
    return builder.data_dir


def mock_with_real_sizes(data_dir: str, datasets, num_examples: int = 6):
    """``tfds.testing.mock_data`` over metadata with the real split sizes (random examples)."""
    for dataset in datasets:
        write_metadata(data_dir, dataset, SPLIT_SIZES[dataset])
    return tfds.testing.mock_data(num_examples=num_examples, num_sub_examples=4,
                                  policy=tfds.testing.MockPolicy.USE_FILES, data_dir=data_dir)


# --------------------------------------------------------------- tiny learnable stand-ins
FLOWER_CLASSES = (0, 1, 2)
FLOWER_COLOURS = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]], np.float32)
DSPRITES_POSITIONS = (0, 12, 24)   # label_x_position values: VTAB labels 0, 6, 12


def _flower(index: int):
    rng = np.random.default_rng(index)
    label = FLOWER_CLASSES[index % 3]
    image = np.clip(FLOWER_COLOURS[label] + rng.normal(0, 25, (20, 24, 3)), 0, 255).astype(np.uint8)
    return {"image": image, "label": np.int64(label), "file_name": b"x.jpg"}


def _sprite(index: int):
    position = DSPRITES_POSITIONS[index % 3]
    image = np.zeros((64, 64, 1), np.uint8)
    image[28:36, position * 2:position * 2 + 8] = 1
    row = {key: np.int64(0) for key in ("label_shape", "label_scale", "label_orientation", "label_y_position")}
    row.update({key: np.float32(0) for key in ("value_shape", "value_scale", "value_orientation",
                                                "value_x_position", "value_y_position")})
    row.update(image=image, label_x_position=np.int64(position), label_orientation=np.int64(index % 40))
    return row


# CLEVR scenes of 3 + (i % 8) objects, the closest at depth CLEVR_DEPTHS[i % 6]; labels i % 8, i % 6.
CLEVR_DEPTHS = (7.0, 8.2, 8.7, 9.2, 9.7, 12.0)


def _clevr(index: int):
    count = 3 + index % 8
    depths = np.full(count, 20.0, np.float32)
    depths[index % count] = CLEVR_DEPTHS[index % 6]
    coords = np.stack([np.zeros(count), np.zeros(count), depths], axis=1).astype(np.float32)
    return {"image": np.full((12, 16, 3), 40 * (index % 6), np.uint8),
            "objects": {"size": np.zeros(count, np.int64), "pixel_coords": coords}}


# KITTI: i % 4 == 0, 1, 2: the closest vehicle at 5, 15 or 30 m; 3: only pedestrians (type 4).
def _kitti(index: int):
    kind = index % 4
    types = np.array([0, 4] if kind < 3 else [4, 4], np.int64)
    depth = (5.0, 15.0, 30.0, 2.0)[kind]
    location = np.array([[0.0, 0.0, depth], [0.0, 0.0, 1.0 if kind < 3 else 3.0]], np.float32)
    return {"image": np.full((10, 30, 3), 60 * kind, np.uint8), "objects": {"type": types, "location": location}}


def _spec(value):
    if isinstance(value, dict):
        return {key: _spec(item) for key, item in value.items()}
    value = np.asarray(value)
    shape = [None] + list(value.shape[1:]) if value.ndim else []
    if value.ndim == 3:  # images: any height and width
        shape = [None, None, value.shape[-1]]
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


GENERATORS = {"oxford_flowers102": _flower, "dsprites": _sprite, "clevr": _clevr, "kitti": _kitti}

# Small splits that still give VTAB-1k its 1000 support images.
TINY_SIZES = {"oxford_flowers102": {"train": 800, "validation": 200, "test": 60},
              "dsprites": {"train": 1060},   # test = train[80% + 10%:] = train[954:] (106 images)
              "clevr": {"train": 2000, "validation": 48, "test": 5},   # support train[:800]+train[1800:2000]
              "kitti": {"train": 800, "validation": 200, "test": 40}}


def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    """Stand-in for ``DatasetBuilder._as_dataset``: the split's examples, one per index, in order."""
    del decoders, read_config, shuffle_files
    name = self.name
    make = GENERATORS[name]
    instruction = tfds.core.ReadInstruction.from_spec(str(split)) if not isinstance(split, tfds.core.ReadInstruction) \
        else split
    sizes = {k: v.num_examples for k, v in self.info.splits.items()}
    indices = []
    offsets = {}
    total = 0
    for key in sizes:  # a global index per example: splits laid end to end
        offsets[key] = total
        total += sizes[key]
    for absolute in instruction.to_absolute(self.info.splits):
        start = absolute.from_ or 0
        stop = sizes[absolute.splitname] if absolute.to is None else absolute.to
        indices += [offsets[absolute.splitname] + i for i in range(start, stop)]
    signature = _spec(make(0))
    return tf.data.Dataset.from_generator(lambda: (make(i) for i in indices), output_signature=signature)


def mock_tiny(data_dir: str, datasets=("oxford_flowers102", "dsprites")):
    """Prepared-looking tiny VTAB datasets served by :func:`as_dataset` (hand-written examples)."""
    for dataset in datasets:
        sizes = TINY_SIZES[dataset]
        write_metadata(data_dir, dataset, sizes)
    return tfds.testing.mock_data(as_dataset_fn=as_dataset, policy=tfds.testing.MockPolicy.USE_FILES,
                                  data_dir=data_dir)


# A trained-looking run: ProtoNets on a tiny conv4 at 16 px, its experiment.gin and best weights.
TINY_EXPERIMENT = """
EpisodicModel.learner = @learners.protonets()
EpisodicModel.image_size = 16
learners.protonets.backbone = 'conv4'
backbones.conv4.filters = 8
backbones.conv4.blocks = 2
Training.source = @sources.metadataset()
"""


def make_run(model_dir) -> str:
    import gin

    from lite_tf import experiment

    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, experiment.EXPERIMENT_FILE)
    with open(path, "w") as handle:
        handle.write(TINY_EXPERIMENT)
    experiment.parse_gin([path], [])
    model, _ = experiment.build()
    model.save_weights(os.path.join(model_dir, "best.weights.h5"))
    with gin.unlock_config():
        gin.clear_config()
    return str(model_dir)
