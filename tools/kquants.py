"""Simple, deterministic quantisers for the ggml block types gguf-py 0.19.0 can dequantise but
not quantise (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL) and for Q8_K, written for meshllama's test
fixtures (tools/make_gguf_fixtures.py, tools/requantize_gguf.py).

They are not llama.cpp's quantisers (no importance weighting, no search for the best scale):
each sub-block takes its scale (and min) from its own range, the sub-block scales are rounded to
their 4/6/8-bit codes against one f16 super-block scale, and every weight takes the nearest code.
What matters for the tests is only that the bytes are valid blocks; the reference values are
always gguf-py's dequantisation of these bytes (ggml's formula for Q8_K, which gguf-py lacks).

Each quantise_* takes float32 x [rows, cols] (cols a multiple of the block) and returns uint8
[rows, cols / block * block_bytes].
"""

import numpy as np

QK_K = 256

IQ4_NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)


def _f16(values):
    """Rounded to f16 and back (what a reader will see), float32."""
    return values.astype(np.float16).astype(np.float32)


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b)).astype(np.float32)


def _super_blocks(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[-1] % QK_K == 0, x.shape
    return x.reshape(-1, QK_K), x.shape[0]


def _scale_min_codes(scale, minimum, bits):
    """Sub-block scale and min (non-negative, [n, k]) as `bits`-bit codes against f16 d, dmin."""
    top = float((1 << bits) - 1)
    d = _f16(scale.max(axis=1, keepdims=True) / top)
    dmin = _f16(minimum.max(axis=1, keepdims=True) / top)
    sc = np.clip(np.rint(_safe_div(scale, d)), 0, top).astype(np.uint8)
    m = np.clip(np.rint(_safe_div(minimum, dmin)), 0, top).astype(np.uint8)
    return d, dmin, sc, m


def _affine_codes(blocks, sub, levels, bits):
    """Q2_K/Q4_K/Q5_K: codes q in [0, levels) with x ~ (d*sc)*q - dmin*m per sub-block of `sub`."""
    n = blocks.shape[0]
    xs = blocks.reshape(n, -1, sub)
    lo = np.minimum(xs.min(axis=2), 0.0)
    hi = xs.max(axis=2)
    d, dmin, sc, m = _scale_min_codes((hi - lo) / (levels - 1), -lo, bits)
    step = (d * sc.astype(np.float32))[..., None]
    offset = (dmin * m.astype(np.float32))[..., None]
    q = np.clip(np.rint(_safe_div(xs + offset, step)), 0, levels - 1).astype(np.uint8)
    return d, dmin, sc, m, q.reshape(n, QK_K)


def _pack_k4_scales(sc, m):
    """Q4_K/Q5_K's 12 bytes of 6-bit scales and mins (the inverse of gguf-py Q4_K.get_scale_min)."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return out


def _pack_nibbles_k4(q):
    """qs[32g + l] = q[64g + l] | q[64g + 32 + l] << 4 (Q4_K/Q5_K low 4 bits)."""
    q = (q & 15).reshape(-1, 4, 2, 32)
    return (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(-1, 128)


def _f16_bytes(values):
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def quantize_q4_k(x):
    blocks, rows = _super_blocks(x)
    d, dmin, sc, m, q = _affine_codes(blocks, 32, 16, 6)
    out = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k4_scales(sc, m), _pack_nibbles_k4(q)], axis=1)
    return out.reshape(rows, -1)


def quantize_q5_k(x):
    blocks, rows = _super_blocks(x)
    d, dmin, sc, m, q = _affine_codes(blocks, 32, 32, 6)
    high = (q >> 4).reshape(-1, 8, 32)  # bit `sub` of qh[l] is the fifth bit of element 32*sub + l
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for sub in range(8):
        qh |= high[:, sub, :] << sub
    out = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), _pack_k4_scales(sc, m), qh, _pack_nibbles_k4(q)], axis=1)
    return out.reshape(rows, -1)


def _pack_2bit(low):
    """qs[32g + l] holds bits 2j of element 128g + 32j + l (Q2_K, Q3_K)."""
    low = low.reshape(-1, 2, 4, 32)
    qs = np.zeros((low.shape[0], 2, 32), dtype=np.uint8)
    for j in range(4):
        qs |= low[:, :, j, :] << (2 * j)
    return qs.reshape(-1, 64)


def quantize_q2_k(x):
    blocks, rows = _super_blocks(x)
    d, dmin, sc, m, q = _affine_codes(blocks, 16, 4, 4)
    out = np.concatenate([sc | (m << 4), _pack_2bit(q), _f16_bytes(d), _f16_bytes(dmin)], axis=1)
    return out.reshape(rows, -1)


def _symmetric_codes(blocks, sub, q_max, scale_max):
    """Q3_K/Q6_K: signed codes |q| <= q_max with x ~ (d*sc)*q, sc a signed integer |sc| <= scale_max."""
    n = blocks.shape[0]
    xs = blocks.reshape(n, -1, sub)
    scale = np.abs(xs).max(axis=2) / q_max
    d = _f16(scale.max(axis=1, keepdims=True) / scale_max)
    sc = np.clip(np.rint(_safe_div(scale, d)), -scale_max, scale_max).astype(np.int32)
    step = (d * sc.astype(np.float32))[..., None]
    q = np.clip(np.rint(_safe_div(xs, step)), -q_max - 1, q_max).astype(np.int32)
    return d, sc, q.reshape(n, QK_K)


def quantize_q3_k(x):
    blocks, rows = _super_blocks(x)
    d, sc, q = _symmetric_codes(blocks, 16, 3, 31)
    biased = (q + 4).astype(np.uint8)  # low 2 bits in qs, bit 2 in hmask (q = low - 4 unless set)
    hmask = np.zeros((biased.shape[0], 32), dtype=np.uint8)
    high = (biased >> 2).reshape(-1, 8, 32)
    for j in range(8):
        hmask |= high[:, j, :] << j
    codes = (sc + 32).astype(np.uint8)  # 16 x 6 bits: low nibbles in bytes 0..7, top 2 bits in 8..11
    scales = np.zeros((codes.shape[0], 12), dtype=np.uint8)
    for j in range(16):
        scales[:, j % 8] |= (codes[:, j] & 15) << (4 * (j // 8))
        scales[:, 8 + j % 4] |= (codes[:, j] >> 4) << (2 * (j // 4))
    out = np.concatenate([hmask, _pack_2bit(biased & 3), scales, _f16_bytes(d)], axis=1)
    return out.reshape(rows, -1)


def quantize_q6_k(x):
    blocks, rows = _super_blocks(x)
    d, sc, q = _symmetric_codes(blocks, 16, 31, 127)
    u = (q + 32).astype(np.uint8).reshape(-1, 2, 128)
    ql = ((u[:, :, 0:64] & 15) | ((u[:, :, 64:128] & 15) << 4)).reshape(-1, 128)
    qh = np.zeros((u.shape[0], 2, 32), dtype=np.uint8)
    for j in range(4):
        qh |= (u[:, :, 32 * j:32 * j + 32] >> 4) << (2 * j)
    out = np.concatenate([ql, qh.reshape(-1, 64), sc.astype(np.int8).view(np.uint8), _f16_bytes(d)], axis=1)
    return out.reshape(rows, -1)


def quantize_q8_k(x):
    blocks, rows = _super_blocks(x)
    d = (np.abs(blocks).max(axis=1, keepdims=True) / 127).astype(np.float32)
    q = np.clip(np.rint(_safe_div(blocks, d)), -128, 127).astype(np.int8)
    bsums = q.astype(np.int16).reshape(-1, 16, 16).sum(axis=-1, dtype=np.int16)
    out = np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=1)
    return out.reshape(rows, -1)


def dequantize_q8_k(raw):
    """ggml's dequantize_row_q8_K (gguf-py 0.19.0 has no Q8_K): d * q in float32."""
    blocks = np.ascontiguousarray(raw).reshape(-1, 292)
    d = blocks[:, :4].copy().view(np.float32)
    q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(raw.shape[0], -1)


def quantize_iq4_nl(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    blocks = x.reshape(-1, 32)
    amax_at = np.abs(blocks).argmax(axis=1)
    peak = blocks[np.arange(blocks.shape[0]), amax_at]
    d = _f16(peak / -127.0)[:, None]  # the largest magnitude maps to the -127 level
    scaled = _safe_div(blocks, d)
    q = np.abs(scaled[..., None] - IQ4_NL_LEVELS).argmin(axis=-1).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    out = np.concatenate([_f16_bytes(d[:, 0]), qs], axis=1)
    return out.reshape(x.shape[0], -1)


QUANTIZERS = {"Q2_K": quantize_q2_k, "Q3_K": quantize_q3_k, "Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k,
              "Q6_K": quantize_q6_k, "Q8_K": quantize_q8_k, "IQ4_NL": quantize_iq4_nl}


def quantize(x, type_name):
    """Raw blocks of x as ggml type `type_name` ("Q4_K", ... or a type gguf-py quantises itself)."""
    if type_name in QUANTIZERS:
        return QUANTIZERS[type_name](x)
    import gguf
    return gguf.quants.quantize(np.ascontiguousarray(x, dtype=np.float32), gguf.GGMLQuantizationType[type_name])


def dequantize(raw, type_name):
    """float32 values of raw blocks: gguf-py's dequantisation (ggml's formula for Q8_K)."""
    if type_name == "Q8_K":
        return dequantize_q8_k(raw)
    import gguf
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name]).astype(np.float32)
