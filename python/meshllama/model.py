"""A meshllama model as a Hugging Face causal LM: `forward` returns float32 logits and a
`MeshCache` backed by the model's KV-cache slots, so that `generate()` and the seed's
teacher-forcing harness drive it unchanged (docs/PYTHON.md)."""
import contextlib
import dataclasses
import os
import threading
import warnings
import weakref
from collections import OrderedDict

import numpy as np
import torch
from transformers import AutoConfig, GenerationConfig, GenerationMixin, LlamaConfig, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ._core import Engine, MeshllamaError, Mesh, check
from ._ffi import ffi, lib

DEFAULT_MAX_BATCH = 8
_CPU = torch.device("cpu")
_OUTPUT_FIELDS = tuple(field.name for field in dataclasses.fields(CausalLMOutputWithPast))


def _output_fast(logits, cache):
    """CausalLMOutputWithPast(logits=logits, past_key_values=cache) without the dataclass
    __init__: ModelOutput.__setattr__ rebuilds the field list on every assignment, ~40 us a call,
    a fifth of the Python layer's cost per decode step. Same attributes, same keys in the same
    order (checked against HF's constructor at import; _output falls back to it otherwise)."""
    out = CausalLMOutputWithPast.__new__(CausalLMOutputWithPast)
    state = out.__dict__
    state.update(dict.fromkeys(_OUTPUT_FIELDS))
    state["logits"], state["past_key_values"] = logits, cache
    OrderedDict.__setitem__(out, "logits", logits)
    if cache is not None:
        OrderedDict.__setitem__(out, "past_key_values", cache)
    return out


def _output_hf(logits, cache):
    return CausalLMOutputWithPast(logits=logits, past_key_values=cache)


def _same_outputs():
    """Whether _output_fast builds what HF's constructor builds, for this transformers."""
    try:
        logits, cache = torch.zeros(1), object()
        for past in (cache, None):
            a, b = _output_fast(logits, past), _output_hf(logits, past)
            if a.__dict__ != b.__dict__ or list(a.items()) != list(b.items()) or a.to_tuple() != b.to_tuple():
                return False
        return True
    except Exception:
        return False


_output = _output_fast if _same_outputs() else _output_hf


_torch_threads_lock = threading.Lock()
_torch_threads_users = 0
_torch_threads_saved = None


@contextlib.contextmanager
def _torch_intra_op_threads(n):
    """Caps torch's intra-op threads at n while the block runs, restoring the caller's count when
    the last of any concurrent blocks ends. In generate() torch only runs vocabulary-sized ops
    (the logits copy, argmax, the logits processors), which torch splits over its OpenMP team; the
    team's threads then spin for a while after every op, and on a machine with as many cores as
    meshllama has threads they take the core of an engine worker in the next forward step, whose
    parallel regions then wait for it (docs/BENCHMARKS.md: 0.8 ms of Python a step became 16 to 20
    ms on a loaded 2-core machine). n None: torch is left alone."""
    global _torch_threads_users, _torch_threads_saved
    if n is None:
        yield
        return
    with _torch_threads_lock:
        if _torch_threads_users == 0:
            _torch_threads_saved = torch.get_num_threads()
            if _torch_threads_saved > n:
                torch.set_num_threads(n)
        _torch_threads_users += 1
    try:
        yield
    finally:
        with _torch_threads_lock:
            _torch_threads_users -= 1
            if _torch_threads_users == 0 and torch.get_num_threads() != _torch_threads_saved:
                torch.set_num_threads(_torch_threads_saved)


class MeshCache(Cache):
    """The KV cache of one batch of sequences: one meshllama KV slot per row.

    Feeding it back as `past_key_values` continues the sequences; dropping the last reference
    (or `free()`) gives the slots back to the model. `get_seq_length()` counts the columns fed so
    far, left padding included, as Hugging Face's caches do; the slots hold only the real tokens,
    at positions 0, 1, ... (what HF computes from the attention mask)."""

    def __init__(self, engine, batch_size):
        super().__init__(layers=[])
        self._engine = engine
        self.slots = engine.acquire_slots(batch_size)
        self.lengths = [0] * batch_size  # real tokens held per row
        self.columns = 0  # columns fed, padding included
        self._finalizer = weakref.finalize(self, engine.release_slots, list(self.slots))

    def free(self):
        """Gives the slots back now; the cache cannot be fed again."""
        self._finalizer()
        self.slots = None

    @property
    def batch_size(self):
        return len(self.lengths)

    def get_seq_length(self, layer_idx=0):
        return self.columns

    def get_max_length(self, layer_idx=None):
        return self._engine.info["max_seq_len"]

    def get_max_cache_shape(self, layer_idx=0):
        return self._engine.info["max_seq_len"]

    @property
    def is_compileable(self):
        return False

    @property
    def is_croppable(self):
        return False

    @property
    def is_initialized(self):
        return self.columns > 0

    def _unsupported(self, what):
        raise NotImplementedError(f"meshllama: MeshCache does not support {what} (beam search, assisted decoding)")

    def update(self, *args, **kwargs):
        self._unsupported("update() (meshllama keeps the keys and values in its own slots)")

    def crop(self, *args, **kwargs):
        self._unsupported("crop()")

    def reorder_cache(self, *args, **kwargs):
        self._unsupported("reorder_cache()")

    def batch_repeat_interleave(self, *args, **kwargs):
        self._unsupported("batch_repeat_interleave()")

    def batch_select_indices(self, *args, **kwargs):
        self._unsupported("batch_select_indices()")

    def __repr__(self):
        return f"MeshCache(slots={self.slots}, lengths={self.lengths}, columns={self.columns})"


def _config_from_info(info):
    eos = info["eos_token_ids"]
    return LlamaConfig(
        vocab_size=info["vocab_size"], hidden_size=info["hidden_size"], intermediate_size=info["intermediate_size"],
        num_hidden_layers=info["n_layers"], num_attention_heads=info["n_heads"],
        num_key_value_heads=info["n_kv_heads"], head_dim=info["head_dim"],
        max_position_embeddings=info["max_seq_len"], tie_word_embeddings=bool(info["tied_embeddings"]),
        bos_token_id=info["bos_token_id"] if info["bos_token_id"] >= 0 else None,
        eos_token_id=(eos[0] if len(eos) == 1 else eos) if eos else None)


def _as_ids(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer token ids, got {tensor.dtype}")
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected shape [batch, seq], got {list(tensor.shape)}")
    return tensor.detach().to("cpu")


class MeshllamaForCausalLM(PreTrainedModel, GenerationMixin):
    """A model run by libmeshllama over a mesh of devices, with Hugging Face's causal-LM interface."""

    config_class = LlamaConfig
    base_model_prefix = "meshllama"
    main_input_name = "input_ids"
    _supports_cache_class = True
    # torch's intra-op threads while generate() runs (None: leave torch's setting alone); see
    # _torch_intra_op_threads and docs/PYTHON.md "Threads"
    generate_torch_threads = 1
    # the engine's attention is its own: whichever implementation the HF model was loaded with
    # (sdpa is transformers' default) is accepted rather than refused at __init__
    _supports_sdpa = True
    _supports_flex_attn = True

    def __init__(self, engine, config=None, generation_config=None):
        super().__init__(config if config is not None else _config_from_info(engine.info))
        self._engine = engine
        if generation_config is not None:
            self.generation_config = generation_config

    # -- what HF reads off a PreTrainedModel that has no parameters ------------------------------
    @property
    def device(self):
        return _CPU

    @property
    def dtype(self):
        return torch.float32

    @property
    def mesh(self):
        return self._engine.mesh

    @property
    def info(self):
        """The engine's facts (ml_model_info): tp, threads, max_seq_len, max_batch, dtypes, ISA."""
        return dict(self._engine.info)

    def close(self):
        """Frees the model now (its caches can no longer be fed); later calls raise."""
        self._engine.close()

    @property
    def closed(self):
        return self._engine.closed

    def generate(self, *args, **kwargs):
        """Hugging Face's generate(), with torch's intra-op threads capped at
        `generate_torch_threads` (1) while it runs, so that torch's OpenMP team does not compete
        with meshllama's workers for the cores."""
        with _torch_intra_op_threads(self.generate_torch_threads):
            return super().generate(*args, **kwargs)

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        # forward creates a MeshCache for the batch it is given; HF's DynamicCache is not used
        cache = model_kwargs.get("past_key_values")
        if cache is not None:
            cache._is_user_defined = True

    def new_cache(self, batch_size=1):
        """An empty cache of batch_size rows (KV slots taken now)."""
        return MeshCache(self._engine, batch_size)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, cache_position=None, logits_to_keep=0, return_dict=None,
                **kwargs):
        engine = self._engine
        engine.handle()  # raises on a closed model
        if inputs_embeds is not None:
            raise NotImplementedError("meshllama: inputs_embeds is not supported; pass input_ids")
        if input_ids is None:
            raise ValueError("meshllama: input_ids is required")
        ids = _as_ids("input_ids", input_ids).numpy()
        batch, seq = ids.shape
        if seq == 0:
            raise ValueError("meshllama: input_ids has no tokens")

        cache, temporary = past_key_values, False
        if isinstance(cache, MeshCache):
            if cache._engine is not engine:
                raise ValueError("meshllama: past_key_values is a cache of another model")
            if cache.slots is None:
                raise ValueError("meshllama: past_key_values was freed")
            if cache.batch_size != batch:
                raise ValueError(f"meshllama: past_key_values holds {cache.batch_size} sequences, "
                                 f"input_ids {batch}")
        elif cache is None or (isinstance(cache, Cache) and cache.get_seq_length() == 0):
            cache, temporary = MeshCache(engine, batch), use_cache is False
        else:
            raise ValueError(f"meshllama: past_key_values must be a MeshCache from this model (or empty), "
                             f"got {type(cache).__name__} holding {cache.get_seq_length()} positions")
        try:
            logits = self._step(engine, cache, ids, attention_mask, position_ids, cache_position, logits_to_keep)
        finally:
            if temporary:
                cache.free()
        return _output(logits, None if temporary else cache)

    @staticmethod
    def _step(engine, cache, ids, attention_mask, position_ids, cache_position, logits_to_keep):
        """Feeds ids [batch, seq] (numpy) to the cache's slots; returns the logits tensor. Raises
        before anything is fed, and leaves the cache as it was, when an argument is wrong."""
        batch, seq = ids.shape
        past = cache.columns
        if cache_position is not None:
            cache_position = _as_numpy(cache_position)
            if cache_position.shape != (seq,) or cache_position[0] != past or \
                    (seq > 1 and not np.array_equal(cache_position, np.arange(past, past + seq))):
                raise ValueError(f"meshllama: cache_position must continue the cache: expected {past}..{past + seq - 1}")

        # n_real[r]: the real (unpadded) tokens of row r, its last n_real[r] columns
        if attention_mask is None:
            new_mask = None
        else:
            mask = _as_numpy(attention_mask)
            if mask.ndim != 2 or mask.shape[0] != batch or mask.shape[1] not in (past + seq, seq):
                raise ValueError(f"meshllama: attention_mask must be [batch, past + seq] = [{batch}, {past + seq}], "
                                 f"got {list(mask.shape)}")
            new_mask = mask[:, -seq:] != 0
            if new_mask.all():
                new_mask = None
        lengths = cache.lengths
        if new_mask is None:
            n_real = [seq] * batch
        else:
            n_real = new_mask.sum(axis=1).tolist()
            for r in range(batch):
                if not new_mask[r, seq - n_real[r]:].all() or (n_real[r] < seq and lengths[r] > 0):
                    raise ValueError(f"meshllama: attention_mask row {r}: only left padding is supported "
                                     "(zeros before a sequence's first token, ones after)")
        if position_ids is not None:
            pos = _as_numpy(position_ids)
            for r in range(batch):
                n = n_real[r]
                if not n:
                    continue
                row = pos[0 if pos.ndim == 2 and pos.shape[0] == 1 else r] if pos.ndim == 2 else None
                if row is None or row.shape[-1] < n or row[-n] != lengths[r] or \
                        (n > 1 and not np.array_equal(row[-n:], np.arange(lengths[r], lengths[r] + n))):
                    raise ValueError(f"meshllama: position_ids row {r} must be {lengths[r]}..{lengths[r] + n - 1} "
                                     "(positions follow the attention mask)")

        keep = int(logits_to_keep) if isinstance(logits_to_keep, (int, np.integer)) else 0
        out_len = seq if keep <= 0 or keep > seq else keep
        all_logits = out_len > 1
        vocab = engine.info["vocab_size"]
        rows = [r for r in range(batch) if n_real[r]]
        if new_mask is None:
            tokens = ids  # every row whole: the rows back to back are the flat token array
        else:
            tokens = np.concatenate([ids[r, seq - n_real[r]:] for r in rows]) if rows else ids[:0, 0]
        counts = [n_real[r] for r in rows]
        starts = [lengths[r] for r in rows]
        slots = [cache.slots[r] for r in rows]
        # The engine writes straight into the logits tensor when its rows are the tensor's rows:
        # the last position of every row, or every position of unpadded rows.
        direct = len(rows) == batch and (not all_logits or (new_mask is None and out_len == seq))
        if direct:
            logits = torch.empty((batch, out_len, vocab), dtype=torch.float32)
            engine.forward(slots, starts, counts, tokens, all_logits, out=logits.numpy().reshape(-1, vocab))
        else:
            logits = torch.zeros((batch, out_len, vocab), dtype=torch.float32)
            if rows:
                got = torch.from_numpy(engine.forward(slots, starts, counts, tokens, all_logits))
                offset = 0
                for i, r in enumerate(rows):
                    n = counts[i]
                    if all_logits:
                        take = min(n, out_len)
                        logits[r, out_len - take:] = got[offset + n - take:offset + n]
                        offset += n
                    else:
                        logits[r, -1] = got[i]
        for r in rows:
            lengths[r] += n_real[r]
        cache.columns += seq
        return logits


def _as_numpy(value):
    """A CPU numpy view of a tensor (or array-like) argument."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _hf_config(path):
    try:
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
            config = AutoConfig.from_pretrained(path)  # LlamaConfig, MistralConfig or Qwen2Config
            gen = None
            if os.path.exists(os.path.join(path, "generation_config.json")):
                gen = GenerationConfig.from_pretrained(path)
            return config, gen
    except Exception:  # an odd config.json: the engine's own facts still describe the model
        pass
    return None, None


def load_tokenizer(path, *, warn=False):
    """An HF tokenizer for a checkpoint directory or GGUF file, or None where none can be built.
    With warn=True a missing Python package (gguf for a GGUF file) is said in a warning: the
    checkpoint has a tokenizer, this environment cannot read it."""
    try:
        from transformers import AutoTokenizer
        path = os.fspath(path)
        if os.path.isfile(path):
            directory, name = os.path.split(os.path.abspath(path))
            return AutoTokenizer.from_pretrained(directory, gguf_file=name)
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:
        if warn and isinstance(e, ImportError):
            warnings.warn(f"meshllama: no Hugging Face tokenizer for {path} ({type(e).__name__}: {e}); "
                          "the tokenizer is None (install the missing package; token ids still work)", stacklevel=3)
        return None


def from_pretrained(path, device=None, max_seq_len=0, *, max_batch=DEFAULT_MAX_BATCH, tokenizer=True):
    """Opens a Hugging Face checkpoint directory or a GGUF file over `device` (a Mesh or an int tp).
    Returns (model, tokenizer); tokenizer is None where transformers cannot build one (or when
    tokenizer=False). max_seq_len 0: min(the config's context, 4096)."""
    mesh = Mesh.of(device)
    path = os.fspath(path)
    engine = Engine.open(path, mesh, max_seq_len, max_batch)
    config, gen = _hf_config(path)
    model = MeshllamaForCausalLM(engine, config, gen)
    model.name_or_path = path
    return model, (load_tokenizer(path, warn=True) if tokenizer else None)


_DTYPES = {torch.float32: "ML_TENSOR_F32", torch.float16: "ML_TENSOR_F16", torch.bfloat16: "ML_TENSOR_BF16"}


def _tensor_table(hf_model):
    """The HF model's own tensors as an ml_tensor array (zero-copy: data pointers into torch's
    storage), and the objects that must outlive the engine."""
    state = hf_model.state_dict()
    config = hf_model.config
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # the embedding matrix itself
    names = sorted(state)
    table = ffi.new("ml_tensor[]", len(names))
    keep = [table]
    for i, name in enumerate(names):
        t = state[name]
        if t.device.type != "cpu":
            raise ValueError(f"build_model: tensor {name} is on {t.device}; meshllama reads CPU memory "
                             "(move the HF model with .cpu() first)")
        if not t.is_contiguous():
            raise ValueError(f"build_model: tensor {name} is not contiguous (strides {t.stride()}); "
                             "meshllama reads row-major tensors in place")
        name_c = ffi.new("char[]", name.encode())
        shape = ffi.new("int64_t[]", list(t.shape) or [1])
        keep += [name_c, shape, t]
        table[i].name = name_c
        table[i].dtype = getattr(lib, _DTYPES[t.dtype]) if t.dtype in _DTYPES else -1
        table[i].n_dims = t.dim()
        table[i].shape = shape
        table[i].data = ffi.cast("const void *", t.data_ptr())
        table[i].n_bytes = t.numel() * t.element_size()
    return table, len(names), keep


def build_model(hf_model, device=None, max_seq_len=0, *, max_batch=DEFAULT_MAX_BATCH):
    """The seed's API: a meshllama model over `device` (a Mesh or an int tp) from a loaded
    Hugging Face LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM (their biases included,
    as the config announces them; a Mistral sliding window must be at least max_seq_len), reading
    the HF model's own tensors in place (no checkpoint on disk; f16/f32 tensors are not copied
    except the row-parallel slices each device packs; bf16 matrices are copied into the CPU
    kernels' row groups, docs/DECISIONS.md). The HF model's weights must stay
    alive and unchanged while the returned model lives (it keeps references to them).
    max_seq_len 0: min(the config's context, 4096, the sliding window if any)."""
    mesh = Mesh.of(device)
    config = getattr(hf_model, "config", None)
    if config is None or not hasattr(hf_model, "state_dict"):
        raise TypeError("build_model: expected a transformers LlamaForCausalLM, MistralForCausalLM or "
                        f"Qwen2ForCausalLM, got {type(hf_model).__name__}")
    config_json = config.to_json_string().encode()
    table, n, keep = _tensor_table(hf_model)
    source = f"{type(hf_model).__name__}({getattr(config, '_name_or_path', '') or 'in memory'})".encode()
    out = ffi.new("ml_model **")
    check(lib.ml_model_open_tensors(config_json, len(config_json), table, n, source,
                                    mesh.params(max_seq_len, max_batch), out))
    engine = Engine(out[0], mesh, keepalive=keep)
    model = MeshllamaForCausalLM(engine, config, getattr(hf_model, "generation_config", None))
    return model


__all__ = ["build_model", "MeshCache", "MeshllamaForCausalLM", "from_pretrained", "load_tokenizer", "MeshllamaError", "lib"]
