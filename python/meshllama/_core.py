"""Python face of the C library: errors, the mesh description, and a model handle with its KV slots.

Everything torch- and transformers-specific lives in model.py; this module needs only numpy.
"""
import threading

import numpy as np

from ._ffi import ffi, lib


class MeshllamaError(RuntimeError):
    """A failure reported by libmeshllama: `status` is the ml_status code, `code` its name
    ("ML_ERR_CONFIG"), and the message is the library's ml_last_error() text."""

    def __init__(self, status, message):
        self.status = status
        self.code = ffi.string(lib.ml_strerror(status)).decode().split(":")[0]
        super().__init__(message)


class ArgumentError(MeshllamaError, ValueError):
    """ML_ERR_ARG: a caller argument (token id, length, slot, tp, ...) is invalid."""


class UnsupportedError(MeshllamaError, NotImplementedError):
    """ML_ERR_UNSUPPORTED: a valid input that this build cannot run."""


def check(status, what=None):
    """Raises the library's error for a non-zero status."""
    if status == 0:
        return
    message = ffi.string(lib.ml_last_error()).decode("utf-8", "replace")
    if not message:
        message = ffi.string(lib.ml_strerror(status)).decode()
    if what:
        message = f"{what}: {message}"
    cls = {lib.ML_ERR_ARG: ArgumentError, lib.ML_ERR_UNSUPPORTED: UnsupportedError}.get(status, MeshllamaError)
    raise cls(status, message)


_BACKENDS = {"auto": lib.ML_MESH_AUTO, "threads": lib.ML_MESH_THREADS, "mpi": lib.ML_MESH_MPI}
_ACTS = {"accurate": lib.ML_ACT_ACCURATE, "fast": lib.ML_ACT_FAST}
_KVS = {"f32": lib.ML_KV_F32, "bf16": lib.ML_KV_BF16}


class Mesh:
    """The devices a model is split over: `Mesh(tp=N)` (1-D tensor parallel), `Mesh(rows, cols)`
    (the seed's mesh shape, tp = rows * cols), with the mesh backend ("auto", "threads", "mpi"),
    worker threads (0: this process's share of the cores), activation precision
    ("accurate" | "fast") and KV-cache type ("f32" | "bf16")."""

    def __init__(self, rows=None, cols=None, *, tp=None, backend="auto", threads=0, act="accurate", kv="f32"):
        if (rows is None) != (cols is None):
            raise ValueError("Mesh: give both rows and cols, or tp=N")
        if rows is not None and tp is not None and tp != rows * cols:
            raise ValueError(f"Mesh: tp={tp} disagrees with a {rows}x{cols} mesh")
        for name, value, table in (("backend", backend, _BACKENDS), ("act", act, _ACTS), ("kv", kv, _KVS)):
            if value not in table:
                raise ValueError(f"Mesh: {name}={value!r}: expected one of {', '.join(table)}")
        for name, value in (("rows", rows), ("cols", cols), ("tp", tp), ("threads", threads)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"Mesh: {name}={value!r}: expected a non-negative int")
        self.rows, self.cols = rows, cols
        self.tp = rows * cols if rows is not None else (tp if tp is not None else 1)
        self.backend, self.threads, self.act, self.kv = backend, threads, act, kv

    @classmethod
    def of(cls, device):
        """A Mesh from what build_model accepts as its device: a Mesh, an int tp, or None (tp 1)."""
        if device is None:
            return cls()
        if isinstance(device, Mesh):
            return device
        if isinstance(device, int) and not isinstance(device, bool):
            return cls(tp=device)
        raise TypeError(f"device: expected a meshllama.Mesh or an int tp, got {type(device).__name__}")

    def params(self, max_seq_len, max_batch):
        p = ffi.new("ml_model_params *", lib.ml_model_default_params())
        p.tp = self.tp
        if self.rows is not None:
            p.mesh_rows, p.mesh_cols = self.rows, self.cols
        p.n_threads = self.threads
        p.max_seq_len = max_seq_len or 0
        p.max_batch = max_batch
        p.act_mode, p.kv_dtype, p.mesh_backend = _ACTS[self.act], _KVS[self.kv], _BACKENDS[self.backend]
        return p

    def __repr__(self):
        shape = f"{self.rows}, {self.cols}" if self.rows is not None else f"tp={self.tp}"
        return f"Mesh({shape}, backend={self.backend!r}, threads={self.threads}, act={self.act!r}, kv={self.kv!r})"


def _string(ptr):
    return ffi.string(ptr).decode("utf-8", "replace") if ptr != ffi.NULL else None


class Engine:
    """An opened ml_model: forward steps on KV slots, and the pool of free slots."""

    def __init__(self, handle, mesh, keepalive=None):
        self._handle = handle
        self._keepalive = keepalive  # caller memory the weights point into (open from tensors)
        self.mesh = mesh
        self.lock = threading.Lock()
        info = ffi.new("ml_model_info *")
        lib.ml_model_get_info(handle, info)
        self.info = {name: getattr(info, name) for name in (
            "vocab_size", "hidden_size", "n_layers", "n_heads", "n_kv_heads", "head_dim", "max_seq_len",
            "max_batch", "tp", "n_threads", "bos_token_id", "rank", "n_ranks", "intermediate_size",
            "tied_embeddings")}
        self.info["eos_token_ids"] = [info.eos_token_ids[i] for i in range(info.n_eos)]
        for name in ("weight_dtype", "isa", "backend", "path"):
            self.info[name] = _string(getattr(info, name))
        self._free_slots = list(range(self.info["max_batch"] - 1, -1, -1))

    @classmethod
    def open(cls, path, mesh, max_seq_len, max_batch):
        out = ffi.new("ml_model **")
        check(lib.ml_model_open(str(path).encode(), mesh.params(max_seq_len, max_batch), out))
        return cls(out[0], mesh)

    @property
    def closed(self):
        return self._handle is None

    def handle(self):
        if self._handle is None:
            raise MeshllamaError(lib.ML_ERR_ARG, "meshllama: the model is closed")
        return self._handle

    def close(self):
        with self.lock:
            if self._handle is not None:
                lib.ml_model_close(self._handle)
                self._handle = None
                self._keepalive = None

    def acquire_slots(self, n):
        with self.lock:
            self.handle()
            if n > len(self._free_slots):
                in_use = self.info["max_batch"] - len(self._free_slots)
                raise MeshllamaError(
                    lib.ML_ERR_ARG,
                    f"meshllama: {n} sequences need {n} KV slots but only {len(self._free_slots)} of "
                    f"max_batch={self.info['max_batch']} are free ({in_use} held by live caches); "
                    "open the model with a larger max_batch or drop old past_key_values")
            slots = [self._free_slots.pop() for _ in range(n)]
        for slot in slots:
            check(lib.ml_reset_slot(self._handle, slot))
        return slots

    def release_slots(self, slots):
        with self.lock:
            if self._handle is not None:
                self._free_slots.extend(reversed(slots))

    def forward(self, slots, start_pos, counts, tokens, all_logits, out=None):
        """One ml_forward: counts[s] ids of `tokens` (all sequences' ids back to back, any
        integer array) for slot slots[s] at start_pos[s]. Writes float32 logits [n_seq, vocab]
        (last token) or [sum(counts), vocab] into `out` (a C-contiguous float32 array of that
        shape) or a new array, and returns it."""
        n_seq = len(slots)
        flat = np.asarray(tokens).reshape(-1)
        if flat.dtype != np.int32:
            if flat.size and (flat.min() < -2**31 or flat.max() >= 2**31):
                raise ValueError(f"input_ids: token id {int(flat.max())} does not fit in int32")
            flat = flat.astype(np.int32)
        flat = np.ascontiguousarray(flat)
        # slots, start positions and token counts in one array: three pointers into it
        meta = np.array([*slots, *start_pos, *counts], dtype=np.int32)
        rows = int(meta[2 * n_seq:].sum()) if all_logits else n_seq
        vocab = self.info["vocab_size"]
        if out is None:
            out = np.empty((rows, vocab), dtype=np.float32)
        elif out.shape != (rows, vocab) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"logits buffer: expected C-contiguous float32 [{rows}, {vocab}], "
                             f"got {out.dtype} {list(out.shape)}")
        batch = ffi.new("ml_batch *")
        meta_c = ffi.from_buffer("int[]", meta)
        batch.n_seq = n_seq
        batch.slots = meta_c
        batch.start_pos = meta_c + n_seq
        batch.n_tokens = meta_c + 2 * n_seq
        batch.tokens = ffi.from_buffer("int32_t[]", flat)
        batch.all_logits = 1 if all_logits else 0
        with self.lock:
            check(lib.ml_forward(self.handle(), batch, ffi.from_buffer("float[]", out, require_writable=True)))
        return out

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def version():
    return _string(lib.ml_version())
