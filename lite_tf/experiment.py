"""An experiment: gin configuration in, a trained model dir or evaluation results out.

An experiment file binds:
  EpisodicModel.learner / image_size / lite / query_batch_size   (lite_tf/model.py)
  Training.*  (below: the data source, schedule and optimiser)
and the source's own configurables (e.g. EpisodeSampler.*, make_episode_dataset.* for
``sources.metadataset``). The image size is bound once, on ``EpisodicModel.image_size``; the
experiment hands it to the source. ``train`` and ``evaluate`` are what the launchers call; they
check every argument and input before writing anything (see lite_tf/model_dir.py for the contract).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import pathlib
import re
import tokenize
from typing import Optional, Sequence

import gin
import keras
import tensorflow as tf

from lite_tf import callbacks as lite_callbacks
from lite_tf import distribute
from lite_tf import faults
from lite_tf import gin_errors
from lite_tf import optimizers
from lite_tf import registry
from lite_tf import runtime
from lite_tf.errors import ConfigError, DataError, LiteTfError
from lite_tf.model import EpisodicModel
from lite_tf.model_dir import (BEST_WEIGHTS, CHECKPOINTS, EXPERIMENT_FILE, LOGS, OPERATIVE_FILE, ExperimentError,
                               ModelDir)
from lite_tf.source import Source

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINT_CHOICES = ("best", "latest", "init")
log = logging.getLogger(__name__)


class DivergedError(LiteTfError, FloatingPointError):
    """Training met a NaN/Inf; the message names the episode and the resume point."""


@gin.configurable
class Training:
    """Data source, schedule and optimiser of a meta-training run.

    An "epoch" is ``episodes_per_epoch`` training episodes; the run saves a resumable checkpoint
    after each, so that is also the most work a crash can lose. ``validate_every = 0`` turns
    validation off (the last weights are kept); ``valid_datasets`` validates on other sub-datasets
    of the source than it trains on. ``evaluator`` names the registered evaluator that scores the run
    (default: the one its source names, ``Source.evaluator``).
    """

    def __init__(self, source: Optional[Source] = None, train_split: str = "train", valid_split: str = "valid",
                 test_split: str = "test", epochs: int = 10, episodes_per_epoch: int = 100,
                 validation_episodes: int = 50, validate_every: int = 1, optimizer: str = "adam",
                 learning_rate: float = 1e-3, tasks_per_update: int = 1, seed: int = 0, image_log_every: int = 5,
                 statistics_every: int = 10, valid_datasets: Optional[Sequence[str]] = None,
                 eval_datasets: Optional[Sequence[str]] = None, strategy: Optional[str] = None,
                 evaluator: Optional[str] = None):
        if not isinstance(source, Source):
            raise ExperimentError("Training.source must be a data source, e.g. Training.source = "
                                  f"@sources.metadataset() (known: {', '.join(registry.list_sources())}); "
                                  f"got {source!r}.")
        for name, value, low in (("epochs", epochs, 1), ("episodes_per_epoch", episodes_per_epoch, 1),
                                 ("validation_episodes", validation_episodes, 1),
                                 ("validate_every", validate_every, 0), ("tasks_per_update", tasks_per_update, 1),
                                 ("image_log_every", image_log_every, 1), ("statistics_every", statistics_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a positive integer" if low else "an integer >= 0"
                raise ExperimentError(f"Training.{name} must be {what}; got {value!r}.")
        if optimizer not in ("adam", "sgd"):
            raise ExperimentError(f"Training.optimizer must be 'adam' or 'sgd'; got {optimizer!r}.")
        if strategy not in distribute.STRATEGIES:
            raise ExperimentError(f"Training.strategy must be one of {distribute.STRATEGIES}; got {strategy!r}.")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
            raise ExperimentError(f"Training.learning_rate must be a positive number; got {learning_rate!r}.")
        self.source, self.train_split, self.valid_split, self.test_split = source, train_split, valid_split, test_split
        self.epochs, self.episodes_per_epoch = epochs, episodes_per_epoch
        self.validation_episodes, self.validate_every = validation_episodes, validate_every
        self.optimizer_name, self.learning_rate, self.tasks_per_update = optimizer, learning_rate, tasks_per_update
        self.seed, self.image_log_every, self.statistics_every = seed, image_log_every, statistics_every
        self.valid_datasets = list(valid_datasets) if valid_datasets is not None else None
        self.eval_datasets = list(eval_datasets) if eval_datasets is not None else None
        self.strategy = strategy
        if evaluator is not None and not isinstance(evaluator, str):
            raise ExperimentError("Training.evaluator must be the name of a registered evaluator (known: "
                                  f"{', '.join(registry.list_evaluators())}); got {evaluator!r}.")
        self.evaluator = evaluator

    def optimizer(self, strategy: Optional[tf.distribute.Strategy] = None) -> keras.optimizers.Optimizer:
        """The Keras optimizer; several tasks per update use its own gradient accumulation.

        Under a ``strategy`` each replica trains on its own task, so ``tasks_per_update`` counts
        tasks across replicas (lite_tf/distribute.py).
        """
        steps = distribute.accumulation_steps(self.tasks_per_update, strategy or tf.distribute.get_strategy())
        accumulation = steps if steps > 1 else None
        if self.optimizer_name == "sgd":
            return keras.optimizers.SGD(self.learning_rate, gradient_accumulation_steps=accumulation)
        return optimizers.Adam(self.learning_rate, gradient_accumulation_steps=accumulation)


@contextlib.contextmanager
def data_errors(data_root: Optional[str]):
    """Reports a data module's ValueError/OSError (not yet on the LiteTfError base) as a DataError."""
    try:
        yield
    except LiteTfError:
        raise
    except (ValueError, OSError) as error:
        raise DataError(f"{error} (--data_root={data_root!r})") from error


def episodes(training: Training, model: EpisodicModel, split: str, seed: int, data_root: Optional[str],
             datasets: Optional[Sequence[str]] = None, first_episode: int = 0):
    """The source's episodes at the model's image size, from ``first_episode`` of the seed's stream
    on; data problems become one-line DataErrors."""
    with data_errors(data_root):
        dataset = training.source.episodes_from(first_episode, split, image_size=model.image_size, seed=seed,
                                                data_root=data_root, datasets=datasets)
    shape = dataset.element_spec["support_images"].shape
    if shape.rank not in (4, 5) or tuple(shape[-3:-1]) != (model.image_size, model.image_size):  # 5: clips
        raise DataError(f"The source's {split!r} episodes have images of shape {shape}, not "
                        f"{model.image_size} px as EpisodicModel.image_size says.")
    return dataset


# ----------------------------------------------------------------------------------------- gin
def resolve_config_path(path: str) -> str:
    """A gin file as given, or relative to the repository (so gin/... works from any folder)."""
    if os.path.isfile(path):
        return path
    candidate = REPOSITORY_ROOT / path
    if candidate.is_file():
        return str(candidate)
    raise ExperimentError(f"Gin config file {path!r} not found (looked in the current folder and {REPOSITORY_ROOT}).")


class _NoGinPathProbes(logging.Filter):
    """Gin logs "Path not found" (at ERROR) for each search location it tries before the one that
    holds an included file; those are probes, not errors (a file found nowhere raises)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found")


def _search_package_first() -> None:
    """Included gin files ('gin/...') resolve against lite_tf's own folder first, whatever the cwd."""
    prefixes = getattr(gin.config, "_LOCATION_PREFIXES", None)
    if isinstance(prefixes, list):
        if str(REPOSITORY_ROOT) in prefixes:
            prefixes.remove(str(REPOSITORY_ROOT))
        prefixes.insert(0, str(REPOSITORY_ROOT))
    else:  # another gin version: append (files are still found, after the cwd)
        gin.add_config_file_search_path(str(REPOSITORY_ROOT))


def _included(path: str, seen: set) -> list:
    """(name, text) of a gin file and, recursively, the files it includes (to locate a syntax error)."""
    if path in seen or not os.path.isfile(path):
        return []
    seen.add(path)
    with open(path, errors="replace") as handle:
        text = handle.read()
    found = [(path, text)]
    for name in re.findall(r"^\s*include\s+['\"]([^'\"]+)['\"]", text, flags=re.M):
        candidates = [name] if os.path.isabs(name) else [str(REPOSITORY_ROOT / name), name]
        for candidate in candidates:
            if os.path.isfile(candidate):
                found += _included(candidate, seen)
                break
    return found


def parse_gin(configs: Sequence[str], bindings: Sequence[str] = ()) -> str:
    """Registers every plugin (learners, backbones, sources and the configurables their modules
    define), parses configs then bindings; returns the config text.

    Unknown configurables, misspelt parameters and syntax errors (an unclosed bracket included)
    raise ExperimentError naming the file (or binding) and line; an unknown plugin lists the
    registered ones (lite_tf/gin_errors.py).
    """
    registry.load_plugins()
    _search_package_first()
    paths = [resolve_config_path(c) for c in configs]
    root_logger, probes = logging.getLogger(), _NoGinPathProbes()
    root_logger.addFilter(probes)
    try:
        with gin.unlock_config():
            gin.clear_config()
            for path in paths:
                _parse_or_explain(lambda: gin.parse_config_file(path), lambda: _included(path, set()))
            _parse_or_explain(lambda: gin.parse_config(list(bindings)),
                              lambda: [(f"--gin_bindings={binding!r}", binding) for binding in bindings])
    finally:
        root_logger.removeFilter(probes)
    return gin.config_str()


def _parse_or_explain(parse, sources) -> None:
    try:
        parse()
    except (ValueError, KeyError, SyntaxError, TypeError, ImportError, IOError, tokenize.TokenError) as error:
        raise ExperimentError(f"Bad gin configuration: {gin_errors.explain(error, tuple(sources()))}") from error


def build(compile: bool = True) -> tuple:
    """(model, training) from the parsed gin config, seeded by Training.seed; errors are explained.

    ``compile=False`` (evaluation) leaves out the optimizer, whose saved state evaluation ignores.
    """
    try:
        runtime.apply()  # before TensorFlow's runtime starts: it fixes the thread settings
        training = Training()
        keras.utils.set_random_seed(training.seed)  # before any weight is initialised
        strategy = distribute.make_strategy(training.strategy)
        with strategy.scope():  # variables made here are mirrored across the replicas
            model = EpisodicModel()
            if model.lite_config.h == "auto":  # the memory planner picks h (probes in fresh processes)
                from lite_tf import plan

                plan.resolve_auto_h(model.lite_config, gin.config_str(), model.precision)
            if compile:
                model.compile(training.optimizer(strategy))
    except LiteTfError:
        raise
    except (TypeError, ValueError, KeyError) as error:
        raise ExperimentError(f"Could not build the experiment from gin: {error}") from error
    return model, training


def load_run_config(model_dir: str, bindings: Sequence[str] = ()) -> str:
    """Parses a run's experiment.gin plus ``bindings`` (what every evaluation tool starts from)."""
    path = ModelDir(model_dir).experiment_file
    if not os.path.isfile(path):
        raise ExperimentError(f"{model_dir!r} has no {EXPERIMENT_FILE}: not a training run.")
    return parse_gin([path], bindings)


def load_run(model_dir: str, bindings: Sequence[str] = ()) -> tuple:
    """(model, training) rebuilt from a run's experiment.gin (plus ``bindings``), weights not loaded."""
    load_run_config(model_dir, bindings)
    return build(compile=False)


# ------------------------------------------------------------------------------------ weights
def check_checkpoint(model_dir: Optional[str], which: str) -> None:
    """Fails early (before building anything) on a --checkpoint that cannot be loaded."""
    if which in ("best", "latest"):
        if not model_dir:
            raise ExperimentError(f"--checkpoint={which} needs --model_dir.")
        if which == "best" and not os.path.isfile(os.path.join(model_dir, BEST_WEIGHTS)):
            raise ExperimentError(f"No {BEST_WEIGHTS} in {model_dir!r} (no epoch finished yet); "
                                  "use --checkpoint=latest or --checkpoint=init.")
    elif which != "init" and not os.path.isfile(which):
        raise ExperimentError(f"--checkpoint must be one of {', '.join(CHECKPOINT_CHOICES)} or a weights "
                              f"file; {which!r} is none of these.")


def load_weights(model: EpisodicModel, model_dir: Optional[str], which: str) -> str:
    """Loads 'best', 'latest', 'init' (the seeded untrained weights) or a file; refuses NaN/Inf weights."""
    check_checkpoint(model_dir, which)
    if which == "init":
        return "init (untrained)"
    if which == "latest":
        path = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINTS))
        if path is None:
            raise ExperimentError(f"No checkpoint in {os.path.join(model_dir, CHECKPOINTS)}.")
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
    else:
        path = os.path.join(model_dir, BEST_WEIGHTS) if which == "best" else which
        try:
            model.load_weights(path)
        except (ValueError, OSError) as error:
            raise ExperimentError(f"Could not load weights {path!r}: {error}") from error
    if not lite_callbacks.all_finite(model.variables):
        raise ExperimentError(f"{path} holds NaN/Inf weights; evaluate another checkpoint.")
    return path


# ------------------------------------------------------------------------------------ training
def _faults_as_one_line(train_function):
    """A full disk (lock, events writer, checkpoint, weights) or a record the pipeline rejects inside
    ``model.fit`` (damaged image data, a wrong label: its check names dataset, class and record)
    becomes one line saying what to do and where a rerun resumes. Nothing of an unfinished epoch is
    saved (checkpoints and best weights are written whole or not at all), so a rerun trusts only
    complete files. (libjpeg prints its own lines for a damaged JPEG: they are dropped.)"""
    @functools.wraps(train_function)
    def wrapped(model_dir, *args, **kwargs):
        try:
            with faults.without_libjpeg_lines():
                return train_function(model_dir, *args, **kwargs)
        except LiteTfError:
            raise
        except Exception as error:  # noqa: BLE001 - only the two kinds below are translated
            checkpoints = os.path.join(model_dir or ".", CHECKPOINTS)
            resume = (tf.train.latest_checkpoint(checkpoints) if os.path.isdir(checkpoints) else None) or \
                "the start, as no epoch had finished"
            faults.raise_if_disk_full(error, model_dir, f"rerun the same command; it resumes from {resume}")
            clash = faults.grappler_tmp_var_clash(error)
            if clash is not None:
                raise ConfigError(f"Training stopped: {clash}") from None
            record = faults.pipeline_assertion(error)
            if record is None:
                raise
            raise DataError(f"Training stopped: {record}. Delete that class file and rerun lite_tf_convert with "
                            f"the same flags to rewrite it from the source images (or replace the data), then "
                            f"rerun the same command; it resumes from {resume}.") from None
    return wrapped


@_faults_as_one_line
def train(model_dir: str, configs: Sequence[str], bindings: Sequence[str] = (), data_root: Optional[str] = None,
          verbose: int = 1, resume_with_changes: bool = False) -> dict:
    """Runs (or resumes) one experiment; returns the last epoch's logs ({} if it had finished).

    verbose: 0 silent, 1 Keras progress bar and a line per epoch, 2 a line per epoch.
    """
    if verbose not in (0, 1, 2):
        raise ExperimentError(f"--verbose must be 0, 1 or 2; got {verbose!r}.")
    run_dir = ModelDir(model_dir)
    if not configs:
        raise ExperimentError("At least one --gin_config is required (e.g. gin/quickstart.gin).")
    # Everything that can be wrong is checked before the model dir is written to.
    config_text = parse_gin(configs, bindings)
    run_dir.check(config_text, resume_with_changes)
    model, training = build()
    strategy = model.distribute_strategy
    chief, replicas = distribute.is_chief(strategy), strategy.num_replicas_in_sync
    checkpoint = lite_callbacks.ResumableCheckpoint(distribute.checkpoint_dir(run_dir.join(CHECKPOINTS), strategy),
                                                    model, restore_from=run_dir.join(CHECKPOINTS))
    saved_epoch = checkpoint.saved_epoch()

    def training_episodes(epoch: int):
        # A resumed run continues the seed's episode stream where the saved epoch left it, so it
        # trains on the episodes an uninterrupted run does; under a strategy each replica reads its
        # own pipeline (distinct seeds, lite_tf/distribute.py).
        return distribute.distribute_episodes(
            strategy, lambda seed, first=0: episodes(training, model, training.train_split, seed, data_root,
                                                     first_episode=first),
            seed=training.seed, first_step=epoch * training.episodes_per_epoch)

    valid_data, validation_steps = None, None
    if training.validate_every:
        validation_steps = max(training.validation_episodes // replicas, 1)  # episodes per replica
        valid_data = distribute.distribute_episodes(
            strategy, lambda seed: episodes(training, model, training.valid_split, seed, data_root,
                                            training.valid_datasets).take(validation_steps).cache(),
            seed=training.seed + 1)
    # The first episode of the images log also checks that the data decodes.
    sample = next(iter(episodes(training, model, training.valid_split if valid_data is not None else
                                training.train_split, training.seed + 1, data_root,
                                training.valid_datasets if valid_data is not None else None)))
    train_data = training_episodes(saved_epoch)

    # Under multi-worker every worker trains, but only the chief owns the model dir and its logs.
    with run_dir.lock() if chief else contextlib.nullcontext():
        changed = run_dir.check(config_text, resume_with_changes)  # again, now that no one else writes
        if changed:
            log.warning("Resuming %s with changed settings: %s.", model_dir, ", ".join(changed))
        if chief:
            run_dir.record(config_text)
        initial_epoch = checkpoint.restore()
        model.optimizer.learning_rate = training.learning_rate  # the checkpoint holds the old one
        if initial_epoch != saved_epoch:  # another trainer advanced it in between
            train_data = training_episodes(initial_epoch)
        if initial_epoch >= training.epochs:
            if chief and not os.path.exists(run_dir.join(OPERATIVE_FILE)):  # killed just before writing it
                run_dir.write_operative_config(gin.operative_config_str())
            if verbose:
                print(f"Training already finished ({initial_epoch} epochs) in {model_dir}.")
            return {}
        if initial_epoch and verbose:
            print(f"Resuming from the end of epoch {initial_epoch}.")
        log_dir = run_dir.join(LOGS)
        stop_on_nan = lite_callbacks.StopOnNaN()
        callbacks = [stop_on_nan]
        if chief:  # one writer of best weights and TensorBoard
            callbacks += [
                lite_callbacks.BestWeights(run_dir.join(BEST_WEIGHTS),
                                           monitor="val_accuracy" if valid_data is not None else None),
                lite_callbacks.EpochEvents(log_dir, stop_on_nan, statistics_every=training.statistics_every,
                                           episode=sample, image_log_every=training.image_log_every),
            ]
        # Last: saving commits the epoch. A kill before it redoes the epoch identically on resume,
        # and the redo rewrites the same best weights and events (lite_tf/callbacks.py).
        callbacks.append(checkpoint)
        if verbose and chief:
            callbacks.append(lite_callbacks.EpochSummary(training.epochs))
        with distribute.peer_failures(strategy, resume_point=checkpoint.latest):
            history = model.fit(train_data, epochs=training.epochs, initial_epoch=initial_epoch,
                                steps_per_epoch=training.episodes_per_epoch, validation_data=valid_data,
                                validation_steps=validation_steps,
                                validation_freq=max(training.validate_every, 1), callbacks=callbacks,
                                verbose=1 if verbose == 1 else 0, shuffle=False)
        if chief:
            run_dir.write_operative_config(gin.operative_config_str())
    if stop_on_nan.failed_at is not None or checkpoint.refused_epoch is not None:
        resume = tf.train.latest_checkpoint(run_dir.join(CHECKPOINTS))
        where = (f"the loss became {stop_on_nan.failed_at[1]} at episode {stop_on_nan.failed_at[0] + 1} of epoch "
                 f"{initial_epoch + len(history.epoch)}" if stop_on_nan.failed_at is not None
                 else f"the weights became NaN/Inf in epoch {checkpoint.refused_epoch}")
        raise DivergedError(
            f"Training stopped: {where}. Nothing of that epoch was saved; the resume point is "
            f"{resume or 'the start (no epoch finished)'}. Lower Training.learning_rate (or check the data), "
            "then rerun with --resume_with_changes.")
    return {key: values[-1] for key, values in history.history.items()}


# ---------------------------------------------------------------------------------- evaluation
def make_evaluator(name: Optional[str], source: Source, options: Optional[dict] = None):
    """The registered evaluator ``name`` (default: the source's) built with the ``options`` given.

    Options left None keep the evaluator's gin-bound or default values; an option the evaluator does
    not take is a one-line error naming it and the evaluator.
    """
    import inspect

    name = name or source.evaluator
    factory = registry.get_evaluator(name)
    given = {key: value for key, value in (options or {}).items() if value is not None}
    accepted = inspect.signature(factory).parameters
    unknown = [key for key in given if key not in accepted]
    if unknown:
        raise ExperimentError(f"--{unknown[0]} does not apply to the {name!r} evaluator, which scores "
                              f"{type(source).__name__} runs; it takes "
                              f"{', '.join('--' + key for key in accepted if key != 'log') or 'no options'}.")
    return factory(**given)


def evaluate(model_dir: Optional[str], data_root: Optional[str] = None, bindings: Sequence[str] = (),
             datasets: Optional[Sequence[str]] = None, episodes: Optional[int] = None, split: Optional[str] = None,
             checkpoint: str = "best", seed: Optional[int] = None, output: Optional[str] = None,
             progress: bool = True, evaluator=None, configs: Sequence[str] = (), source=None,
             options: Optional[dict] = None) -> dict:
    """Scores a run's weights on each dataset of its source; writes <output>.json and .md.

    The one evaluation orchestrator (every launcher's evaluation comes here). The model is rebuilt
    from the run's experiment.gin (or ``configs``) and ``checkpoint`` loaded. The data is the run's
    source unless ``source`` is given (a Source, or a registered source's name built from gin, e.g.
    ``'vtab_md'`` for an MD-v2 run). The evaluator is
    ``evaluator`` (a registered name or an Evaluator), else ``Training.evaluator``, else the source's
    (``Source.evaluator``), built with ``episodes``, ``seed``, ``progress`` and ``options`` where given.
    ``datasets`` defaults to the run's own evaluation datasets (Training.eval_datasets, else the
    datasets it trained on, else all the source has); a dataset whose evaluated classes training
    could have drawn is reported with a warning.
    """
    from lite_tf.eval.evaluator import Evaluator

    if model_dir and configs:
        raise ExperimentError("Pass --model_dir (its experiment.gin is used) or --gin_config, not both.")
    if configs:
        parse_gin(configs, bindings)
    elif not model_dir or not os.path.isdir(model_dir):
        raise ExperimentError(f"--model_dir {model_dir!r} is not a folder.")
    else:
        load_run_config(model_dir, bindings)
    check_checkpoint(model_dir, checkpoint)
    model, training = build(compile=False)
    if isinstance(source, str):  # a registered source's name, built with its gin bindings
        source = registry.get_source(source)()
    source = source or training.source
    if not isinstance(evaluator, Evaluator):
        evaluator = make_evaluator(evaluator or training.evaluator, source,
                                   {"episodes": episodes, "seed": seed, **(options or {}), "progress": progress})
    split = split or training.test_split
    output = output or evaluator.default_output(model_dir or ".", split, source)
    folder = os.path.dirname(os.path.abspath(output))
    if model_dir and folder.startswith(os.path.abspath(model_dir) + os.sep):
        os.makedirs(folder, exist_ok=True)  # a results folder inside the run
    if not os.access(folder, os.W_OK):
        raise ExperimentError(f"Cannot write the results to {output}.json: the folder is missing or read-only.")
    with data_errors(data_root):
        if source is training.source:
            names = evaluator.datasets_to_evaluate(training, split, data_root, datasets)
        else:
            names = list(datasets) if datasets else None
        if hasattr(evaluator, "check"):  # a resumable evaluator checks its tasks before anything is loaded
            evaluator.check(source, names, data_root)
        weights = load_weights(model, model_dir, checkpoint)
        results = evaluator.evaluate(model, source, split, data_root=data_root, datasets=names, output=output)
    results.update(model_dir=model_dir, weights=weights, output=output)
    evaluator.write(results, output, evaluator.title(results, weights))
    return results
