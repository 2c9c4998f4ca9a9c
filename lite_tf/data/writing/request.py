"""One ``lite_tf_convert`` run: an input (image folder or TFDS dataset) converted to a record set,
or a finished set verified. Every option is checked before anything is read or written.

    request = ConvertRequest(output_dir="/data/records", image_folder="/data/birds")
    report = request.convert()          # writer.WriteReport
    reports = request.verify()          # [check.VerifyReport]: what a rerun would find, or the records
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import check, convert, images
from lite_tf import faults
from lite_tf.errors import ConfigError


@dataclasses.dataclass
class ConvertRequest:
    """The converter's options (the flags of tools/convert.py, same names)."""

    output_dir: str
    image_folder: Optional[str] = None
    tfds_name: Optional[str] = None
    tfds_data_dir: Optional[str] = None
    download: bool = False
    tfds_splits: Optional[Sequence[str]] = None
    image_key: Optional[str] = None
    label_key: Optional[str] = None
    classes_per_pass: int = 0
    name: Optional[str] = None
    split_fractions: Sequence = convert.DEFAULT_SPLIT_FRACTIONS
    split_file: Optional[str] = None
    seed: int = 0
    superclass_file: Optional[str] = None
    parent_file: Optional[str] = None
    skip_bad_images: bool = False
    image_format: str = "jpeg"
    channels: int = 3
    target_size: Optional[int] = None
    max_side: Optional[int] = None
    jpeg_quality: int = convert.DEFAULT_JPEG_QUALITY
    workers: int = 2
    progress: bool = True

    def _common(self, needs_input: bool) -> dict:
        """The options the planners share, checked."""
        if self.image_folder is not None and self.tfds_name is not None:
            raise ConfigError("Give exactly one input: --image_folder or --tfds_name, not both.")
        if needs_input and self.image_folder is None and self.tfds_name is None:
            raise ConfigError("Give exactly one input: --image_folder or --tfds_name.")
        try:
            fractions = [float(f) for f in self.split_fractions]
        except ValueError:
            raise ConfigError(f"--split_fractions must be numbers TRAIN,VALID,TEST; got "
                              f"{','.join(map(str, self.split_fractions))}.") from None
        if self.target_size is not None and self.target_size < 1:
            raise ConfigError(f"--target_size must be a positive number of pixels; got {self.target_size}.")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {self.workers}.")
        if self.classes_per_pass < 0:
            raise ConfigError(f"--classes_per_pass must be 0 (one pass) or positive; got {self.classes_per_pass}.")
        for flag in ("split_file", "superclass_file", "parent_file"):
            path = getattr(self, flag)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"--{flag}={path}: no such file.")
        images.ImageOptions(self.image_format, self.channels, self.max_side, self.jpeg_quality)  # checks them
        return dict(split_fractions=fractions, split_file=self.split_file, seed=self.seed,
                    skip_bad_images=self.skip_bad_images, max_side=self.max_side, jpeg_quality=self.jpeg_quality,
                    image_format=self.image_format, channels=self.channels, superclass_file=self.superclass_file,
                    parent_file=self.parent_file)

    def _plan(self, common: dict):
        """(plan, before_load) for the input."""
        if self.image_folder is not None:
            return convert.plan_image_folder(self.image_folder, self.output_dir, self.name, **common), None
        return convert.plan_tfds(self.tfds_name, self.output_dir, self.tfds_data_dir, self.download,
                                 tfds_splits=self.tfds_splits, image_key=self.image_key, label_key=self.label_key,
                                 dataset_name=self.name, classes_per_pass=self.classes_per_pass, **common)

    def convert(self):
        """Writes (or completes, or rewrites the bad files of) the record set; returns its WriteReport."""
        plan, before_load = self._plan(self._common(needs_input=True))
        try:
            if self.image_folder is not None:
                return plan.write(workers=self.workers, parallel="thread", progress=self.progress,
                                  target_size=self.target_size)
            return plan.write(workers=1, progress=self.progress, before_load=before_load,
                              target_size=self.target_size)
        except Exception as error:  # noqa: BLE001 - a full disk (any error type) or an unwritable folder
            faults.raise_if_disk_full(error, os.path.join(self.output_dir, self.name or ""),
                                      "rerun the same command; the class files already written are verified "
                                      "and kept")
            if isinstance(error, OSError):  # e.g. a read-only output folder; the message names the file
                raise ConfigError(f"cannot write the output: {error}") from error
            raise

    def verify(self) -> List[check.VerifyReport]:
        """With an input: what a rerun would find; without: each set's records against its spec."""
        common = self._common(needs_input=False)
        if self.image_folder is not None or self.tfds_name is not None:
            return [self._plan(common)[0].verify()]
        if self.name is not None:
            return [check.verify_records(os.path.join(self.output_dir, self.name))]
        root = self.output_dir
        if os.path.exists(os.path.join(root, spec_lib.SPEC_FILE)):
            folders = [root]
        elif os.path.isdir(root):
            folders = [os.path.join(root, e) for e in sorted(os.listdir(root))
                       if os.path.exists(os.path.join(root, e, spec_lib.SPEC_FILE))]
        else:
            raise ConfigError(f"--output_dir={root}: no such folder.")
        if not folders:
            raise ConfigError(f"--output_dir={root} holds no record set (no {spec_lib.SPEC_FILE}); nothing to verify.")
        return [check.verify_records(folder) for folder in folders]
