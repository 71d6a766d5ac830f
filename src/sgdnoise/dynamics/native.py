"""Compiled kernels of the FCN on the CPU (its training step and its outputs): build once
per machine, load, call.

``fcn_kernels()`` compiles ``fcn_kernels.c`` (next to this file) with the system C
compiler (``$CC``, else ``cc``) as ``-O3 -march=native`` (``$SGDNOISE_NATIVE_ARCH``
replaces ``native``: e.g. ``x86-64-v3`` builds the AVX2 kernels on an AVX-512 machine, to
test them), caches the shared library under ``$SGDNOISE_CACHE`` (default
``~/.cache/sgdnoise``) in a file named by a hash of the source, the compiler, the target
and the CPU's model and flags (nodes of a cluster with different CPUs each build their
own), and loads it with ctypes. The kernels use the CPU's widest vectors: 16 floats with
AVX-512, 8 with AVX2 (``FCNKernels.lanes``). It returns None, and the FCN step stays in
torch (dynamics.networks.FCNStep), when:

- ``SGDNOISE_NATIVE=0`` is set;
- there is no C compiler, or the CPU has neither AVX-512 nor AVX2 with FMA (the source
  refuses to compile);
- the build fails for any other reason (its message is kept in ``build_failure()``).

The library is written to a temporary file and renamed into place, so jobs building it
at once on a shared cache never load a partial file. ``FCNKernels`` wraps its entry points,
``fcn_step`` and ``fcn_outputs`` (the C source documents the computation), for torch
tensors.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("fcn_kernels.c")
LANES = 16
"""The batch size, the width and the input size must be multiples of it (16 samples fill a
512-bit vector, two 256-bit ones)."""

_failure: list[str] = []


def build_failure() -> str | None:
    """Why the last ``fcn_kernels()`` gave None (None if it did not)."""
    return _failure[-1] if _failure else None


def _cpu_signature() -> str:
    """The CPU's model name and flags (first processor of /proc/cpuinfo), else the machine."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    keep = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags")]
    return "\n".join(keep[:2])


def _cache_dir() -> Path:
    root = os.environ.get("SGDNOISE_CACHE") or Path.home() / ".cache" / "sgdnoise"
    return Path(root) / "native"


def _build(compiler: str, architecture: str, target: Path) -> None:
    """Compile SOURCE for ``-march=architecture`` into ``target`` (atomically); raise on
    failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        command = [compiler, "-O3", f"-march={architecture}", "-shared", "-fPIC", "-o", partial]
        result = subprocess.run(
            [*command, str(SOURCE)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit status {result.returncode}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.cache
def fcn_kernels() -> FCNKernels | None:
    """The compiled kernels, built on first use; None where they cannot be (see module)."""
    if os.environ.get("SGDNOISE_NATIVE", "1") == "0":
        _failure.append("disabled by SGDNOISE_NATIVE=0")
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _failure.append("no C compiler (cc, or $CC)")
        return None
    architecture = os.environ.get("SGDNOISE_NATIVE_ARCH", "native")
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler, architecture, _cpu_signature()):
        key.update(part if isinstance(part, bytes) else part.encode())
    target = _cache_dir() / f"fcn_kernels-{key.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            _build(compiler, architecture, target)
        return FCNKernels(ctypes.CDLL(str(target)))
    except (OSError, RuntimeError) as error:
        _failure.append(f"build of {SOURCE.name} failed: {error}")
        return None


class StepConfig(ctypes.Structure):
    """``struct fcn_config`` of the C source: shapes and scalar factors of the step."""

    _fields_ = [
        ("depth", ctypes.c_long),
        ("batch", ctypes.c_long),
        ("input_size", ctypes.c_long),
        ("width", ctypes.c_long),
        ("relu", ctypes.c_long),
        ("square_hinge", ctypes.c_long),
        ("kappa", ctypes.c_float),
        ("lr", ctypes.c_float),
        ("activation_scale", ctypes.c_float),
        ("input_scale", ctypes.c_float),
        ("hidden_scale", ctypes.c_float),
    ]


def _check(
    name: str,
    floats: list[tuple[Tensor, tuple[int, ...]]],
    indices: list[tuple[Tensor, tuple[int, ...]]],
) -> None:
    """Refuse what the C code would misread: each tensor with its expected shape, float32
    (``floats``) or int64 (``indices``), on the CPU, contiguous."""
    for tensors, wanted in ((floats, torch.float32), (indices, torch.int64)):
        for tensor, shape in tensors:
            if tensor.dtype != wanted or tensor.device.type != "cpu":
                raise ValueError(f"{name}: a tensor is {tensor.dtype} on {tensor.device}")
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name}: a tensor is {tuple(tensor.shape)}, not {shape}")
            if not tensor.is_contiguous():
                raise ValueError(f"{name}: a {tuple(tensor.shape)} tensor is not contiguous")


def _training_sets(
    name: str, samples: Tensor, rows_per_set: int, per_replica: bool, replica_ids: Tensor
) -> None:
    """Refuse replica ids or a set size that would read past ``samples``."""
    sets = samples.shape[0] // rows_per_set  # one training set per replica, or one shared
    fits = sets * rows_per_set == samples.shape[0] and (per_replica or sets == 1)
    if not fits or (per_replica and len(replica_ids) and int(replica_ids.max()) >= sets):
        raise ValueError(f"{name}: the replica ids and set size do not match the samples")


class FCNKernels:
    """``fcn_step`` and ``fcn_outputs`` of the C source, for float32 CPU tensors.

    Index tensors (replica ids, batch indices) are int64; shapes, layout and the multiples
    of 16 are checked before any call, so the C code never reads out of bounds except
    through the values of the batch indices (< P), which MinibatchSelection draws.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        library.fcn_lanes.restype = ctypes.c_int
        self.lanes = library.fcn_lanes()
        """Samples per vector in this build: 16 (AVX-512) or 8 (AVX2)."""
        pointer, integer = ctypes.c_void_p, ctypes.c_long
        config = ctypes.POINTER(StepConfig)
        self._step = library.fcn_step
        self._step.argtypes = [config, integer, *[pointer] * 4, integer, integer]
        self._step.argtypes += [pointer] * 6
        self._outputs = library.fcn_outputs
        self._outputs.argtypes = [config, integer, *[pointer] * 3, integer, pointer]
        self._outputs.argtypes += [integer, integer, pointer]
        for function in (self._step, self._outputs):
            function.restype = ctypes.c_int

    @staticmethod
    def _weights(config: StepConfig, count: int) -> list[tuple[int, ...]]:
        """The shapes of the hidden weights and the readout of ``count`` replicas."""
        width, size = config.width, config.input_size
        if any(value % LANES for value in (width, size)):
            raise ValueError(f"fcn kernels: h and d must be multiples of {LANES}")
        shapes = [(count, width, size)] + [(count, width, width)] * (config.depth - 1)
        return [*shapes, (count, width)]

    def step(
        self,
        config: StepConfig,
        weights: list[Tensor],
        readout: Tensor,
        samples: Tensor,
        labels: Tensor,
        per_replica: bool,
        replica_ids: Tensor,
        indices: Tensor,
        initial_outputs: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One SGD step of R replicas, parameters updated in place; what the step saw.

        weights: the L hidden layers' stacked weights, (R, h, d) then (R, h, h); readout
        (R, h); samples (n, d) and labels (n,): the training inputs as rows and their
        labels, one training set of P rows per global replica id (``per_replica``) or
        one shared set; replica_ids (R,) and indices (R, B) int64: the replicas' global
        ids and their batch; initial_outputs (R, P): f0 on each replica's training set.
        Returns, per replica (R,): the batch's mean loss, whether a sample felt a force
        (bool: the step moved the parameters) and whether every stability was finite.
        """
        count, batch = indices.shape
        training, rows = initial_outputs.shape[-1], samples.shape[0]
        if len(weights) != config.depth or batch != config.batch or batch % LANES:
            raise ValueError(f"fcn_step: L and B (a multiple of {LANES}) must match the config")
        floats = [*weights, readout, samples, labels, initial_outputs]
        shapes = self._weights(config, count)
        shapes += [(rows, config.input_size), (rows,), (count, training)]
        indices_shapes = [(replica_ids, (count,)), (indices, (count, batch))]
        _check("fcn_step", list(zip(floats, shapes, strict=True)), indices_shapes)
        _training_sets("fcn_step", samples, training, per_replica, replica_ids)
        batch_loss = samples.new_empty(count)
        moved, finite = torch.empty(count, dtype=torch.bool), torch.empty(count, dtype=torch.bool)
        status = self._step(
            ctypes.byref(config),
            count,
            _pointer_array(weights),
            readout.data_ptr(),
            samples.data_ptr(),
            labels.data_ptr(),
            training if per_replica else 0,
            training,
            *[tensor.data_ptr() for tensor in (replica_ids, indices, initial_outputs)],
            *[tensor.data_ptr() for tensor in (batch_loss, moved, finite)],
        )
        if status != 0:
            raise MemoryError("fcn_step: out of memory for its workspace")
        return batch_loss, moved, finite

    def outputs(
        self,
        config: StepConfig,
        weights: list[Tensor],
        readout: Tensor,
        samples: Tensor,
        set_size: int,
        per_replica: bool,
        replica_ids: Tensor,
        first: int,
        total: int,
    ) -> Tensor:
        """f(w_r, x) of samples first .. first + total - 1 of each replica's set, (R, total).

        samples (n, d): the inputs as rows, one set of ``set_size`` rows per global replica
        id (``per_replica``) or one shared set; weights, readout as for ``step``.
        """
        count = len(replica_ids)
        if len(weights) != config.depth or not 0 <= first <= first + total <= set_size:
            raise ValueError("fcn_outputs: L, or the samples asked for, do not fit")
        shapes = [*self._weights(config, count), (samples.shape[0], config.input_size)]
        floats = list(zip([*weights, readout, samples], shapes, strict=True))
        _check("fcn_outputs", floats, [(replica_ids, (count,))])
        _training_sets("fcn_outputs", samples, set_size, per_replica, replica_ids)
        outputs = samples.new_empty(count, total)
        status = self._outputs(
            ctypes.byref(config),
            count,
            _pointer_array(weights),
            readout.data_ptr(),
            samples.data_ptr(),
            set_size if per_replica else 0,
            replica_ids.data_ptr(),
            first,
            total,
            outputs.data_ptr(),
        )
        if status != 0:
            raise MemoryError("fcn_outputs: out of memory for its workspace")
        return outputs


def _pointer_array(tensors: list[Tensor]) -> ctypes.c_void_p:
    """A C array of the tensors' data pointers (``float *const *``)."""
    pointers = (ctypes.c_void_p * len(tensors))(*[tensor.data_ptr() for tensor in tensors])
    return ctypes.cast(pointers, ctypes.c_void_p)
