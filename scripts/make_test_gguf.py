#!/usr/bin/python3
"""Writes a small GGUF file the way llama.cpp lays out Gemma 4, with a writer independent of
qgemma's (Python struct + numpy only), so qgemma's reader is tested against "another program".

The file has llama.cpp's gemma4 metadata keys and tensor names (token_embd.weight,
blk.N.attn_q.weight, ..., output_norm.weight), a 262,144-token tokenizer vocabulary with
synthetic token strings, and Q4_0 / Q8_0 / F32 tensors quantized with llama.cpp's block layouts
(ggml-common.h): Q4_0 = f16 scale + 16 bytes of nibbles per 32 values, Q8_0 = f16 scale + 32
int8 per 32 values. Random weights, fixed seed.

    /usr/bin/python3 scripts/make_test_gguf.py OUT.gguf [--alignment 32] [--vocab 262144]
    /usr/bin/python3 scripts/make_test_gguf.py OUT.gguf --print-expected   # tensor list as JSON

Layer layout: 6 layers, sliding x5 then one global layer (as Gemma 4's [sliding x5, global]
pattern); global layers have no attn_v (K = V) and share one rope_freqs tensor.
"""

import argparse
import json
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3

# GGUF metadata value types (gguf.md)
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL = range(8)
T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(8, 13)

# ggml tensor type ids and (block size, bytes per block)
GGML_F32, GGML_Q4_0, GGML_Q8_0 = 0, 2, 8
BLOCKS = {GGML_F32: (1, 4), GGML_Q4_0: (32, 18), GGML_Q8_0: (32, 34)}
TYPE_NAMES = {GGML_F32: "f32", GGML_Q4_0: "q4_0", GGML_Q8_0: "q8_0"}

ARCH = "gemma4"
N_EMBD = 64
N_LAYER = 6
N_HEAD = 2
N_HEAD_KV_SWA = 2
N_HEAD_KV_FULL = 1
HEAD_DIM_SWA = 32
HEAD_DIM_FULL = 64
N_FF = 128
SLIDING_WINDOW = 512
CONTEXT_LENGTH = 131072


def is_sliding(il):
    return il % 6 != 5


# --- GGUF encoding -----------------------------------------------------------------------------

def enc_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR_FORMATS = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I", T_INT32: "<i",
    T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}
NUMPY_DTYPES = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2", T_UINT32: "<u4",
    T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1", T_UINT64: "<u8", T_INT64: "<i8",
    T_FLOAT64: "<f8",
}


def enc_value(vtype, value):
    if vtype == T_STRING:
        return enc_string(value)
    if vtype == T_ARRAY:
        elem_type, items = value
        out = [struct.pack("<IQ", elem_type, len(items))]
        if elem_type == T_STRING:
            out.extend(enc_string(x) for x in items)
        elif elem_type == T_ARRAY:
            out.extend(enc_value(T_ARRAY, x) for x in items)
        else:
            out.append(np.asarray(items).astype(NUMPY_DTYPES[elem_type]).tobytes())
        return b"".join(out)
    return struct.pack(SCALAR_FORMATS[vtype], value)


# --- quantization (llama.cpp's reference formulas) --------------------------------------------

def quantize_q8_0(x):
    """x: float32 [rows, n], n % 32 == 0 -> bytes, blocks of (f16 d, int8 qs[32])."""
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    v = blocks * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).clip(-127, 127).astype(np.int8)  # roundf
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", 32)])
    out["d"] = d.astype(np.float16)
    out["qs"] = q
    return out.tobytes()


def quantize_q4_0(x):
    """x: float32 [rows, n], n % 32 == 0 -> bytes, blocks of (f16 d, uint8 qs[16]).
    d = max / -8 where max is the value of largest magnitude; q = clamp(x/d + 8.5, 0, 15);
    element j < 16 goes in the low nibble of qs[j], element j + 16 in its high nibble."""
    blocks = x.reshape(-1, 32)
    idx = np.abs(blocks).argmax(axis=1)
    mx = blocks[np.arange(len(blocks)), idx]
    d = mx / -8.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 0.0)
    q = np.minimum(15, (blocks * inv[:, None] + 8.5).astype(np.int32)).clip(0, 15).astype(np.uint8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "u1", 16)])
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def tensor_bytes(ggml_type, data):
    if ggml_type == GGML_F32:
        return data.astype("<f4").tobytes()
    if ggml_type == GGML_Q8_0:
        return quantize_q8_0(data)
    return quantize_q4_0(data)


# --- model --------------------------------------------------------------------------------------

def tensor_specs(n_vocab):
    """(name, ggml shape [ne0, ne1, ...], type) in llama.cpp's gemma4 naming."""
    specs = [("token_embd.weight", [N_EMBD, n_vocab], GGML_Q4_0)]
    specs.append(("rope_freqs.weight", [HEAD_DIM_FULL // 2], GGML_F32))
    for il in range(N_LAYER):
        swa = is_sliding(il)
        hd = HEAD_DIM_SWA if swa else HEAD_DIM_FULL
        n_kv = N_HEAD_KV_SWA if swa else N_HEAD_KV_FULL
        b = "blk.%d." % il
        specs += [
            (b + "attn_norm.weight", [N_EMBD], GGML_F32),
            (b + "attn_q.weight", [N_EMBD, N_HEAD * hd], GGML_Q4_0),
            (b + "attn_k.weight", [N_EMBD, n_kv * hd], GGML_Q4_0),
        ]
        if swa:  # global layers use K as V (no attn_v)
            specs.append((b + "attn_v.weight", [N_EMBD, n_kv * hd], GGML_Q4_0))
        specs += [
            (b + "attn_output.weight", [N_HEAD * hd, N_EMBD], GGML_Q8_0),
            (b + "attn_q_norm.weight", [hd], GGML_F32),
            (b + "attn_k_norm.weight", [hd], GGML_F32),
            (b + "post_attention_norm.weight", [N_EMBD], GGML_F32),
            (b + "ffn_norm.weight", [N_EMBD], GGML_F32),
            (b + "ffn_gate.weight", [N_EMBD, N_FF], GGML_Q4_0),
            (b + "ffn_up.weight", [N_EMBD, N_FF], GGML_Q4_0),
            (b + "ffn_down.weight", [N_FF, N_EMBD], GGML_Q8_0),
            (b + "post_ffw_norm.weight", [N_EMBD], GGML_F32),
            (b + "layer_output_scale.weight", [1], GGML_F32),
        ]
    specs.append(("output_norm.weight", [N_EMBD], GGML_F32))
    return specs


def metadata(n_vocab, alignment):
    swa = [is_sliding(il) for il in range(N_LAYER)]
    kv = []
    add = lambda k, t, v: kv.append((k, t, v))
    add("general.architecture", T_STRING, ARCH)
    add("general.name", T_STRING, "qgemma test gemma4 (make_test_gguf.py)")
    add("general.file_type", T_UINT32, 2)  # MOSTLY_Q4_0
    add("general.quantization_version", T_UINT32, 2)
    if alignment != 32:
        add("general.alignment", T_UINT32, alignment)
    p = ARCH + "."
    add(p + "context_length", T_UINT32, CONTEXT_LENGTH)
    add(p + "embedding_length", T_UINT32, N_EMBD)
    add(p + "block_count", T_UINT32, N_LAYER)
    add(p + "feed_forward_length", T_UINT32, N_FF)
    add(p + "attention.head_count", T_UINT32, N_HEAD)
    add(p + "attention.head_count_kv", T_ARRAY,
        (T_INT32, [N_HEAD_KV_SWA if s else N_HEAD_KV_FULL for s in swa]))
    add(p + "attention.sliding_window_pattern", T_ARRAY, (T_BOOL, swa))
    add(p + "attention.sliding_window", T_UINT32, SLIDING_WINDOW)
    add(p + "attention.key_length", T_UINT32, HEAD_DIM_FULL)
    add(p + "attention.value_length", T_UINT32, HEAD_DIM_FULL)
    add(p + "attention.key_length_swa", T_UINT32, HEAD_DIM_SWA)
    add(p + "attention.value_length_swa", T_UINT32, HEAD_DIM_SWA)
    add(p + "attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-6)
    add(p + "attention.shared_kv_layers", T_UINT32, 0)
    add(p + "embedding_length_per_layer_input", T_UINT32, 0)
    add(p + "rope.freq_base", T_FLOAT32, 1000000.0)
    add(p + "rope.freq_base_swa", T_FLOAT32, 10000.0)
    add(p + "rope.dimension_count", T_UINT32, HEAD_DIM_FULL)
    add(p + "rope.dimension_count_swa", T_UINT32, HEAD_DIM_SWA)
    add(p + "final_logit_softcapping", T_FLOAT32, 30.0)

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    tokens = special + ["<0x%02X>" % b for b in range(256)]
    tokens += ["tok_%d" % i for i in range(len(tokens), n_vocab)]
    tokens = tokens[:n_vocab]
    scores = -np.arange(1, n_vocab + 1, dtype=np.float32)
    # llama.cpp token types: 1 normal, 3 control, 6 byte
    types = np.ones(n_vocab, dtype=np.int32)
    types[:len(special)] = 3
    types[len(special):len(special) + 256] = 6
    add("tokenizer.ggml.model", T_STRING, "gemma4")
    add("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens))
    add("tokenizer.ggml.scores", T_ARRAY, (T_FLOAT32, scores))
    add("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types))
    add("tokenizer.ggml.merges", T_ARRAY, (T_STRING, ["t o", "to k", "tok _"]))
    add("tokenizer.ggml.bos_token_id", T_UINT32, 2)
    add("tokenizer.ggml.eos_token_id", T_UINT32, 1)
    add("tokenizer.ggml.unknown_token_id", T_UINT32, 3)
    add("tokenizer.ggml.padding_token_id", T_UINT32, 0)
    add("tokenizer.ggml.add_bos_token", T_BOOL, True)
    add("tokenizer.ggml.add_space_prefix", T_BOOL, False)
    add("tokenizer.chat_template", T_STRING,
        "{{ bos_token }}{% for m in messages %}<|turn>{{ m.role }}\n{{ m.content }}<turn|>\n"
        "{% endfor %}<|turn>model\n")
    return kv


def pad(n, alignment):
    return (alignment - n % alignment) % alignment


def write(path, n_vocab, alignment, seed):
    rng = np.random.default_rng(seed)
    kv = metadata(n_vocab, alignment)
    specs = tensor_specs(n_vocab)

    datas = []
    for name, shape, ggml_type in specs:
        n = int(np.prod(shape))
        if name == "rope_freqs.weight":  # llama.cpp's proportional RoPE: 1 rotates, 1e30 not
            x = np.array([1.0] * (shape[0] // 4) + [1e30] * (shape[0] - shape[0] // 4), np.float32)
        elif name.endswith("norm.weight") or name.endswith("scale.weight"):
            x = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
        else:
            x = (0.05 * rng.standard_normal(n)).astype(np.float32)
        datas.append(tensor_bytes(ggml_type, x.reshape(-1, shape[0])))

    header = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(specs), len(kv))]
    for key, vtype, value in kv:
        header.append(enc_string(key) + struct.pack("<I", vtype) + enc_value(vtype, value))
    offset = 0
    offsets = []
    for (name, shape, ggml_type), data in zip(specs, datas):
        offset += pad(offset, alignment)
        offsets.append(offset)
        header.append(enc_string(name) + struct.pack("<I", len(shape)) +
                      struct.pack("<%dQ" % len(shape), *shape) +
                      struct.pack("<IQ", ggml_type, offset))
        offset += len(data)
    head = b"".join(header)
    with open(path, "wb") as f:
        f.write(head)
        f.write(b"\0" * pad(len(head), alignment))
        pos = 0
        for off, data in zip(offsets, datas):
            f.write(b"\0" * (off - pos))
            f.write(data)
            pos = off + len(data)
    return specs, datas


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--alignment", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=262144)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--print-expected", action="store_true",
                    help="print the tensors written (name, shape, type, bytes) as JSON")
    a = ap.parse_args()
    if a.alignment <= 0 or a.alignment & (a.alignment - 1):
        sys.exit("--alignment must be a power of two")
    specs, datas = write(a.out, a.vocab, a.alignment, a.seed)
    if a.print_expected:
        json.dump([{"name": n, "shape": s, "type": TYPE_NAMES[t], "bytes": len(d)}
                   for (n, s, t), d in zip(specs, datas)], sys.stdout, indent=1)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
