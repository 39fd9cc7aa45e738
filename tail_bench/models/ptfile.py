"""A PyTorch checkpoint file (`torch.save`), read as weights only: nothing in it runs.

`torch.load(weights_only=True)` reads tensors, containers and numbers, plus numpy scalars
and dtypes (allowed here: training scripts store metrics as numpy floats, and they are
data). Its reader does not parse pickle protocol 4, which some released CLAP files use; those
go through `_RestrictedUnpickler`, Python's own unpickler limited to the same types (the
restriction the pickle documentation describes). Either way, a file that needs any other
class or function is refused, naming it.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tail_bench.errors import BackboneError

_NUMPY_SCALAR = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar
_NUMPY = [np.dtype, *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]
# what `torch.load(weights_only=True)` needs besides its defaults; numpy 1 pickles name the
# scalar constructor numpy.core.multiarray.scalar, numpy 2 numpy._core.multiarray.scalar
SAFE_GLOBALS = [*_NUMPY, _NUMPY_SCALAR, (_NUMPY_SCALAR, "numpy.core.multiarray.scalar")]

_STORAGES = {f"torch.{name}": getattr(torch, name) for name in (
    "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
    "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage")}
_ALLOWED: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "collections.OrderedDict": OrderedDict,
    "numpy.core.multiarray.scalar": _NUMPY_SCALAR,
    "numpy._core.multiarray.scalar": _NUMPY_SCALAR,
    "numpy.dtype": np.dtype,
    **{f"numpy.dtypes.{n}": getattr(np.dtypes, n) for n in np.dtypes.__all__},
    **_STORAGES,
}


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch zip archive's `data.pkl` with only `_ALLOWED` globals; tensor data
    comes from the archive's records (read only when `with_data`)."""

    def __init__(self, archive: zipfile.ZipFile, root: str, *, with_data: bool) -> None:
        super().__init__(archive.open(f"{root}data.pkl"))
        self.archive, self.root, self.with_data = archive, root, with_data

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[f"{module}.{name}"]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: tuple) -> torch.storage.TypedStorage:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or storage_type not in _STORAGES.values():
            raise _Refused(f"persistent id {kind!r}")
        dtype = storage_type.dtype
        if not self.with_data:
            return torch.storage.TypedStorage(numel, dtype=dtype, device="meta", _internal=True)
        raw = self.archive.read(f"{self.root}data/{key}")
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else \
            torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _restricted_load(path: Path, *, with_data: bool) -> Any:
    with zipfile.ZipFile(path) as archive:
        roots = [n[: -len("data.pkl")] for n in archive.namelist() if n.endswith("data.pkl")
                 and n.count("/") == 1]
        if len(roots) != 1:
            raise BackboneError(f"{path}: not a PyTorch checkpoint (a zip archive without one "
                                "data.pkl)")
        return _RestrictedUnpickler(archive, roots[0], with_data=with_data).load()


def read_weights(path: Path, *, with_data: bool = True) -> Any:
    """The object `torch.save` wrote, on the CPU, read as weights only. Without `with_data`
    the tensors are not read (memory-mapped, or on the meta device): enough for key names,
    shapes and the small values a training script stores next to them."""
    path = Path(path)
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(SAFE_GLOBALS):
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": handled below
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise BackboneError(f"{path}: not a weights-only checkpoint: loading it would run "
                                f"{_unsafe_globals(path)}; the suite loads weights only "
                                "(torch.load weights_only=True)") from None
        if "Unsupported operand" not in str(err) or not is_zip:
            raise _not_a_checkpoint(path, err) from None
    except Exception as err:  # torch.load raises many types for a file that is not its own
        raise _not_a_checkpoint(path, err) from None
    try:  # pickle protocol 4 or later, which torch's weights-only reader does not parse
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage is deprecated, still what pickles hold
            return _restricted_load(path, with_data=with_data)
    except _Refused as err:
        raise BackboneError(f"{path}: not a weights-only checkpoint: loading it would run "
                            f"{err}; the suite loads weights only") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError,
            TypeError) as err:
        raise _not_a_checkpoint(path, err) from None


def _not_a_checkpoint(path: Path, err: Exception) -> BackboneError:
    detail = (str(err).splitlines() or [""])[0]
    reason = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return BackboneError(f"{path}: not a PyTorch checkpoint ({reason}); expected a file "
                         "written by torch.save")


def _unsafe_globals(path: Path) -> str:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the reason was given by torch.load already; name what we can
        found = []
    return ", ".join(found) if found else "code outside tensors, containers and numbers"
