"""Writing Meta-Dataset record sets: the resumable, verifying writer and the converters that feed it.

- writer.py: class files + ``dataset_spec.json`` + manifest, atomic and resumable;
- manifest.py: what a folder holds and what each class file was made from;
- check.py: verification of class files (counts, checksums, labels, image sizes);
- images.py: re-encoding of input images (JPEG or lossless PNG, RGB or one channel);
- splits.py: class splits (fractions or a split file);
- hierarchy.py: two-level and hierarchical specs from a user-supplied hierarchy;
- convert.py: the image-folder and TFDS converters;
- errors.py: their errors (lite_tf DataErrors).
"""
