"""Gin wiring shared by the launchers: parse configs, build the model, open and check a model dir.

An experiment file binds:
  EpisodicModel.learner / image_size / lite / query_batch_size   (lite_tf/model.py)
  Training.*                                                     (below: schedule, optimiser, data)
and the data function's own parameters (e.g. make_episode_dataset.*, EpisodeSampler.*).
"""
from __future__ import annotations

import importlib
import inspect
import os
import pathlib
from typing import Callable, Optional, Sequence

import gin
import keras

from lite_tf import atomic, registry
from lite_tf.model import EpisodicModel

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENT_FILE = "experiment.gin"
OPERATIVE_FILE = "operative_config.gin"
# Modules whose gin configurables experiment files may bind.
CONFIGURABLE_MODULES = ("lite_tf.model", "lite_tf.lite", "lite_tf.data.metadataset.pipeline", "lite_tf.data.metadataset.sampling",
                        "lite_tf.data.orbit")


class ExperimentError(Exception):
    """A problem with the experiment's configuration or model dir, found before training starts."""


@gin.configurable
def metadataset(root: str, split: str, seed: int = 0, datasets: Optional[Sequence[str]] = None):
    """Meta-Dataset-format episodes from ``root`` (sub-folders named by ``datasets``)."""
    from lite_tf.data.metadataset.pipeline import make_episode_dataset

    if not root:
        raise ExperimentError("No data root: pass --data_root (a folder of Meta-Dataset-format record sets).")
    if not os.path.isdir(root):
        raise ExperimentError(f"Data root {root!r} does not exist or is not a folder.")
    if datasets is None:
        datasets = sorted(entry.name for entry in os.scandir(root)
                          if os.path.isfile(os.path.join(entry.path, "dataset_spec.json")))
        if not datasets:
            raise ExperimentError(f"Data root {root!r} holds no dataset folder with a dataset_spec.json.")
    return make_episode_dataset(root, split, datasets=list(datasets), seed=seed)


@gin.configurable
class Training:
    """Schedule, optimiser and data of a meta-training run.

    An "epoch" is ``episodes_per_epoch`` training episodes; the run saves a resumable checkpoint
    after each, so that is also the most work a crash can lose.
    """

    def __init__(self, dataset_fn: Callable = metadataset, train_split: str = "train",
                 valid_split: str = "valid", test_split: str = "test", epochs: int = 10,
                 episodes_per_epoch: int = 100, validation_episodes: int = 50, validate_every: int = 1,
                 optimizer: str = "adam", learning_rate: float = 1e-3, tasks_per_update: int = 1,
                 seed: int = 0, image_log_every: int = 5, statistics_every: int = 10,
                 eval_datasets: Optional[Sequence[str]] = None):
        for name, value in (("epochs", epochs), ("episodes_per_epoch", episodes_per_epoch),
                            ("validation_episodes", validation_episodes), ("validate_every", validate_every),
                            ("tasks_per_update", tasks_per_update)):
            if not isinstance(value, int) or value <= 0:
                raise ExperimentError(f"Training.{name} must be a positive integer; got {value!r}.")
        if optimizer not in ("adam", "sgd"):
            raise ExperimentError(f"Training.optimizer must be 'adam' or 'sgd'; got {optimizer!r}.")
        self.dataset_fn, self.train_split, self.valid_split, self.test_split = (
            dataset_fn, train_split, valid_split, test_split)
        self.epochs, self.episodes_per_epoch = epochs, episodes_per_epoch
        self.validation_episodes, self.validate_every = validation_episodes, validate_every
        self.optimizer_name, self.learning_rate, self.tasks_per_update = optimizer, learning_rate, tasks_per_update
        self.seed, self.image_log_every, self.statistics_every = seed, image_log_every, statistics_every
        self.eval_datasets = eval_datasets

    def optimizer(self) -> keras.optimizers.Optimizer:
        """The Keras optimizer; several tasks per update use its own gradient accumulation."""
        accumulation = self.tasks_per_update if self.tasks_per_update > 1 else None
        if self.optimizer_name == "sgd":
            return keras.optimizers.SGD(self.learning_rate, gradient_accumulation_steps=accumulation)
        return keras.optimizers.Adam(self.learning_rate, gradient_accumulation_steps=accumulation)

    def dataset(self, root: Optional[str], split: str, seed: int, datasets: Optional[Sequence[str]] = None):
        kwargs = {"split": split, "seed": seed}
        if root is not None:
            kwargs["root"] = root
        if datasets is not None:
            if "datasets" not in inspect.signature(self.dataset_fn).parameters:
                raise ExperimentError(f"{self.dataset_fn.__name__} has no 'datasets' parameter to pick sources.")
            kwargs["datasets"] = datasets
        return self.dataset_fn(**kwargs)


def resolve_config_path(path: str) -> str:
    """A gin file as given, or relative to the repository (so gin/... works from any folder)."""
    if os.path.isfile(path):
        return path
    candidate = REPOSITORY_ROOT / path
    if candidate.is_file():
        return str(candidate)
    raise ExperimentError(f"Gin config file {path!r} not found (looked in the current folder and {REPOSITORY_ROOT}).")


def parse_gin(configs: Sequence[str], bindings: Sequence[str]) -> str:
    """Registers every plugin and configurable, parses configs then bindings; returns the config text.

    Unknown configurables, misspelt parameters and syntax errors raise ExperimentError with gin's
    message (which names the file, line and binding).
    """
    registry.load_plugins()
    for module in CONFIGURABLE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
    gin.add_config_file_search_path(str(REPOSITORY_ROOT))
    paths = [resolve_config_path(c) for c in configs]
    try:
        with gin.unlock_config():
            gin.clear_config()
            gin.parse_config_files_and_bindings(paths, list(bindings), finalize_config=False)
    except (ValueError, KeyError, SyntaxError, TypeError, ImportError, IOError) as error:
        raise ExperimentError(f"Bad gin configuration: {error}") from error
    return gin.config_str()


def build(configs: Sequence[str] = (), bindings: Sequence[str] = ()) -> tuple:
    """(model, training) from the currently parsed gin config; construction errors are explained."""
    try:
        training = Training()
        keras.utils.set_random_seed(training.seed)  # before any weight is initialised
        model = EpisodicModel()
    except ExperimentError:
        raise
    except (TypeError, ValueError, KeyError) as error:
        raise ExperimentError(f"Could not build the experiment from gin: {error}") from error
    model.compile(training.optimizer())
    return model, training


def check_model_dir(model_dir: str, config_text: str) -> None:
    """Refuses a model dir that holds a different experiment (nothing is written)."""
    path = os.path.join(model_dir, EXPERIMENT_FILE)
    if not os.path.exists(path):
        if os.path.isdir(model_dir) and os.listdir(model_dir):
            raise ExperimentError(f"Model dir {model_dir!r} is not empty and holds no {EXPERIMENT_FILE}: "
                                  "not a lite_tf run; use a new --model_dir.")
        return
    with open(path) as handle:
        existing = handle.read()
    if existing != config_text:
        raise ExperimentError(
            f"Model dir {model_dir!r} holds a different experiment ({path} differs from this "
            "configuration). Use a new --model_dir, or delete the old one to start over; nothing was changed."
        )


def record_experiment(model_dir: str, config_text: str) -> None:
    """Writes experiment.gin (atomically) so reruns and evaluation rebuild the same experiment."""
    atomic.write_text(os.path.join(model_dir, EXPERIMENT_FILE), config_text)


def write_operative_config(model_dir: str) -> None:
    atomic.write_text(os.path.join(model_dir, OPERATIVE_FILE), gin.operative_config_str())
