"""Reading PyTorch state dicts: ``.pt`` / ``.pth`` files (needs torch) or ``.npz`` files (no torch).

An ``.npz`` file holds one array per parameter under ``param/<state-dict name>``, the layout of the
parity fixture; other keys (inputs, outputs) are not parameters and are left out. torch is an
optional extra (``pip install -e ".[torch]"``) and is imported only to read a torch file.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from typing import Dict

import numpy as np

from lite_tf.errors import DataError

NPZ_PREFIX = "param/"
TORCH_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt")
# Keys under which training scripts nest the state dict of a checkpoint (official LITE / ORBIT / timm).
NESTED_KEYS = ("model_state_dict", "state_dict", "model")

StateDict = Dict[str, np.ndarray]


class WeightsError(DataError):
    """A weights file that cannot be read, or a state dict that does not fit the model; names the parameter."""


def load_state_dict(path: str) -> StateDict:
    """``{name: float32 array}`` of every floating-point parameter and buffer in ``path``.

    Integer buffers (batch norm's ``num_batches_tracked``) are counters, not weights, and are dropped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"Weights file {path!r} does not exist.")
    if path.endswith(".npz"):
        return _from_npz(path)
    if path.endswith(TORCH_SUFFIXES):
        return _from_torch(path)
    raise WeightsError(f"Weights file {path!r}: expected a PyTorch file ({', '.join(TORCH_SUFFIXES)}) or an .npz "
                       f"file of '{NPZ_PREFIX}<name>' arrays.")


def _from_npz(path: str) -> StateDict:
    try:
        with np.load(path) as data:
            state = {key[len(NPZ_PREFIX):]: data[key] for key in data.files if key.startswith(NPZ_PREFIX)}
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:  # a cut-off download, typically
        raise WeightsError(f"Could not read {path!r} as an .npz file: it is truncated or damaged ({error}); "
                           "download or copy it again.") from None
    except (OSError, ValueError, KeyError) as error:
        raise WeightsError(f"Could not read {path!r} as an .npz file: {error}") from None
    if not state:
        raise WeightsError(f"{path!r} holds no '{NPZ_PREFIX}<name>' arrays: not a state dict saved as .npz.")
    return _floating(state, path)


def _from_torch(path: str) -> StateDict:
    try:
        import torch
    except ImportError as error:
        raise WeightsError(f"Reading the PyTorch file {path!r} needs torch: pip install -e \".[torch]\" "
                           f"(or convert it to an .npz of '{NPZ_PREFIX}<name>' arrays elsewhere).") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise WeightsError(f"Could not read {path!r} with torch.load: {error}") from error
    for key in NESTED_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise WeightsError(f"{path!r} is not a state dict (a dict of parameter names to tensors); got "
                           f"{type(loaded).__name__}.")
    state = {}
    for name, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path!r}: entry {name!r} is a {type(value).__name__}, not a tensor.")
        state[name] = value.detach().cpu().numpy() if value.is_floating_point() else value.numpy()
    if state and all(name.startswith("module.") for name in state):  # saved from nn.DataParallel
        state = {name[len("module."):]: value for name, value in state.items()}
    return _floating(state, path)


def _floating(state: StateDict, path: str) -> StateDict:
    out = {name: np.asarray(value, np.float32) for name, value in state.items()
           if np.issubdtype(np.asarray(value).dtype, np.floating)}
    if not out:
        raise WeightsError(f"{path!r} holds no floating-point parameters.")
    check_finite(out, path)
    return out


def check_finite(state: StateDict, where: str) -> None:
    """Refuses a state dict with a NaN/Inf parameter (a diverged or damaged checkpoint), naming it."""
    for name, value in state.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise WeightsError(f"{where!r}: parameter {name!r} holds {bad} NaN/Inf value(s) of {np.size(value)}; "
                               "the checkpoint is diverged or damaged, so nothing was written. Use another one.")
