#!/usr/bin/python3
"""Independent NumPy forward pass of the Gemma 4 text decoder, written from
shared/spec/gemma4-12b.md (not from the C++), reading a GGUF file itself.

  gemma4_ref.py MODEL.gguf --tokens 2,17,300 [--out logits.f32] [--generate N] [--kv-f16]

--out writes float32 logits [tokens x vocab] row-major (every prompt position).
--generate N appends N greedy tokens (argmax, full recomputation each step) and prints all ids.
--kv-f16 rounds K and V to float16 after norm/RoPE, as the engine's f16 KV cache stores them.
Math in float64. Needs numpy only (Debian python3-numpy: run with /usr/bin/python3).
"""
import argparse
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- GGUF reader

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                10: "<Q", 11: "<q", 12: "<d"}
F32, F16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 13, 14, 30
BLOCK = {F32: (1, 4), F16: (1, 2), BF16: (1, 2), Q4_0: (32, 18), Q8_0: (32, 34),
         Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210)}


class Gguf:
    def __init__(self, path):
        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        magic, version = struct.unpack("<4sI", self._take(8))
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"{path}: not a GGUF v2/v3 file")
        n_tensors, n_kv = struct.unpack("<QQ", self._take(16))
        self.meta = {}
        for _ in range(n_kv):
            key = self._str()
            self.meta[key] = self._value(struct.unpack("<I", self._take(4))[0])
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            n_dims = struct.unpack("<I", self._take(4))[0]
            shape = list(struct.unpack(f"<{n_dims}Q", self._take(8 * n_dims)))
            ttype, offset = struct.unpack("<IQ", self._take(12))
            infos.append((name, shape, ttype, offset))
        align = int(self.meta.get("general.alignment", 32))
        data_start = (self.pos + align - 1) // align * align
        self.tensors = {}
        for name, shape, ttype, offset in infos:
            n = int(np.prod(shape))
            bs, ts = BLOCK[ttype]
            start = data_start + offset
            self.tensors[name] = (shape, ttype, self.buf[start:start + n // bs * ts])

    def _take(self, n):
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def _str(self):
        n = struct.unpack("<Q", self._take(8))[0]
        return self._take(n).decode("utf-8", errors="replace")

    def _value(self, t):
        if t == 8:
            return self._str()
        if t == 9:
            et, n = struct.unpack("<IQ", self._take(12))
            return [self._value(et) for _ in range(n)]
        fmt = GGUF_SCALARS[t]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def has(self, name):
        return name in self.tensors

    def get(self, name):
        """The tensor as float64, numpy shape reversed from ggml's (rows first)."""
        shape, ttype, raw = self.tensors[name]
        x = dequantize(ttype, np.asarray(raw))
        return x.reshape(list(reversed(shape)))


def _f16(raw_u8, n_bytes_per_block, offset):
    blocks = raw_u8.reshape(-1, n_bytes_per_block)
    return blocks[:, offset:offset + 2].copy().view(np.float16).astype(np.float64)[:, 0]


def dequantize(ttype, raw):
    if ttype == F32:
        return raw.view(np.float32).astype(np.float64)
    if ttype == F16:
        return raw.view(np.float16).astype(np.float64)
    if ttype == BF16:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if ttype == Q8_0:
        b = raw.reshape(-1, 34)
        d = _f16(raw, 34, 0)
        q = b[:, 2:].copy().view(np.int8).astype(np.float64)
        return (q * d[:, None]).reshape(-1)
    if ttype == Q4_0:
        b = raw.reshape(-1, 18)
        d = _f16(raw, 18, 0)
        qs = b[:, 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64) - 8.0
        return (q * d[:, None]).reshape(-1)
    if ttype in (Q4_K, Q5_K):
        size = 144 if ttype == Q4_K else 176
        b = raw.reshape(-1, size)
        d, dmin = _f16(raw, size, 0), _f16(raw, size, 2)
        s = b[:, 4:16].astype(np.int32)
        sc = np.zeros((len(b), 8), np.int32)
        mn = np.zeros((len(b), 8), np.int32)
        for j in range(4):
            sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
        for j in range(4, 8):
            sc[:, j] = (s[:, j + 4] & 0x0F) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
        qs = b[:, size - 128:].reshape(-1, 4, 32)
        out = np.empty((len(b), 8, 32))
        for c in range(4):
            out[:, 2 * c] = qs[:, c] & 0x0F
            out[:, 2 * c + 1] = qs[:, c] >> 4
        if ttype == Q5_K:  # bit j of qh[l] (bytes 16..47) is bit 4 of sub-block j's element l
            qh = b[:, 16:48].astype(np.int32)
            for j in range(8):
                out[:, j] += ((qh >> j) & 1) * 16
        out = d[:, None, None] * sc[:, :, None] * out - dmin[:, None, None] * mn[:, :, None]
        return out.reshape(-1)
    if ttype == Q6_K:
        b = raw.reshape(-1, 210)
        ql = b[:, 0:128].astype(np.int32)
        qh = b[:, 128:192].astype(np.int32)
        sc = b[:, 192:208].copy().view(np.int8).astype(np.float64)
        d = _f16(raw, 210, 208)
        out = np.empty((len(b), 256))
        for half in range(2):
            l_ = ql[:, 64 * half:64 * half + 64]
            h_ = qh[:, 32 * half:32 * half + 32]
            s_ = sc[:, 8 * half:8 * half + 8]
            q1 = (l_[:, :32] & 0xF) | (((h_ >> 0) & 3) << 4)
            q2 = (l_[:, 32:] & 0xF) | (((h_ >> 2) & 3) << 4)
            q3 = (l_[:, :32] >> 4) | (((h_ >> 4) & 3) << 4)
            q4 = (l_[:, 32:] >> 4) | (((h_ >> 6) & 3) << 4)
            for k, q in enumerate((q1, q2, q3, q4)):
                scale = np.repeat(s_[:, [2 * k, 2 * k + 1]], 16, axis=1)
                out[:, 128 * half + 32 * k:128 * half + 32 * k + 32] = d[:, None] * scale * (q - 32)
        return out.reshape(-1)
    raise ValueError(f"unsupported tensor type {ttype}")


# ---------------------------------------------------------------- the model (spec section 1)

def rmsnorm(x, w, eps):
    """x / rms(x) * w over the last axis; w = None means no multiplier."""
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y if w is None else y * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def rope_neox(x, pos, base, n_rot, factors):
    """x [T, heads, d]; dims i and i + n_rot/2 rotate by pos * base^(-2i/n_rot) / factor_i."""
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half) / n_rot)
    if factors is not None:
        inv = inv / factors
    ang = pos[:, None].astype(np.float64) * inv[None, :]          # [T, half]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    a, b = x[..., :half], x[..., half:n_rot]
    out[..., :half] = a * cos - b * sin
    out[..., half:n_rot] = a * sin + b * cos
    return out


class Model:
    def __init__(self, path, kv_f16=False):
        g = self.g = Gguf(path)
        m = g.meta
        assert m["general.architecture"] == "gemma4"
        a = "gemma4."
        self.n_embd = int(m[a + "embedding_length"])
        self.n_layer = int(m[a + "block_count"])
        self.eps = float(m.get(a + "attention.layer_norm_rms_epsilon", 1e-6))
        self.window = int(m[a + "attention.sliding_window"])
        self.softcap = float(m.get(a + "final_logit_softcapping", 0.0))
        pat = m[a + "attention.sliding_window_pattern"]
        self.sliding = [bool(p) for p in pat]

        def per_layer(key):
            v = m[a + key]
            return [int(x) for x in v] if isinstance(v, list) else [int(v)] * self.n_layer

        self.n_head = per_layer("attention.head_count")
        self.n_kv = per_layer("attention.head_count_kv")
        self.hd_full = int(m[a + "attention.key_length"])
        self.hd_swa = int(m.get(a + "attention.key_length_swa", self.hd_full))
        self.base_full = float(m.get(a + "rope.freq_base", 1e6))
        self.base_swa = float(m.get(a + "rope.freq_base_swa", 1e4))
        self.rot_full = int(m.get(a + "rope.dimension_count", self.hd_full))
        self.rot_swa = int(m.get(a + "rope.dimension_count_swa", self.hd_swa))
        self.rope_freqs = g.get("rope_freqs.weight") if g.has("rope_freqs.weight") else None
        self.emb = g.get("token_embd.weight")                      # [vocab, E]
        self.out = g.get("output.weight") if g.has("output.weight") else self.emb
        self.kv_f16 = kv_f16
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            L = {k: g.get(p + k + ".weight") for k in (
                "attn_norm", "attn_q", "attn_k", "attn_q_norm", "attn_k_norm", "attn_output",
                "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
                "post_ffw_norm")}
            L["attn_v"] = g.get(p + "attn_v.weight") if g.has(p + "attn_v.weight") else None
            L["scale"] = (float(g.get(p + "layer_output_scale.weight").reshape(-1)[0])
                          if g.has(p + "layer_output_scale.weight") else 1.0)
            self.layers.append(L)
        self.output_norm = g.get("output_norm.weight")

    def forward(self, tokens):
        """Logits [T, vocab] for every position of `tokens` (positions 0..T-1)."""
        T = len(tokens)
        pos = np.arange(T)
        x = self.emb[np.asarray(tokens)] * np.sqrt(self.n_embd)   # [T, E]
        for i, L in enumerate(self.layers):
            sl = self.sliding[i]
            hd = self.hd_swa if sl else self.hd_full
            nh, nkv = self.n_head[i], self.n_kv[i]
            base = self.base_swa if sl else self.base_full
            n_rot = self.rot_swa if sl else self.rot_full
            factors = None if sl else self.rope_freqs

            a = rmsnorm(x, L["attn_norm"], self.eps)                       # [T, E]
            q = (a @ L["attn_q"].T).reshape(T, nh, hd)                     # [T, nh, hd]
            kp = (a @ L["attn_k"].T).reshape(T, nkv, hd)                   # [T, nkv, hd]
            vp = kp if L["attn_v"] is None else (a @ L["attn_v"].T).reshape(T, nkv, hd)
            q = rope_neox(rmsnorm(q, L["attn_q_norm"], self.eps), pos, base, n_rot, factors)
            k = rope_neox(rmsnorm(kp, L["attn_k_norm"], self.eps), pos, base, n_rot, factors)
            v = rmsnorm(vp, None, self.eps)
            if self.kv_f16:
                k = k.astype(np.float16).astype(np.float64)
                v = v.astype(np.float16).astype(np.float64)
            # attention, scale 1.0, causal; sliding layers see the window - 1 previous positions
            group = nh // nkv
            kh = np.repeat(k, group, axis=1)                               # [T, nh, hd]
            vh = np.repeat(v, group, axis=1)
            s = np.einsum("ihd,jhd->hij", q, kh)                           # [nh, T, T]
            d = pos[:, None] - pos[None, :]
            visible = d >= 0
            if sl:
                visible &= d < self.window
            s = np.where(visible[None], s, -np.inf)
            s = s - s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            o = np.einsum("hij,jhd->ihd", p, vh).reshape(T, nh * hd)       # [T, nh*hd]
            o = o @ L["attn_output"].T                                     # [T, E]
            h = x + rmsnorm(o, L["post_attention_norm"], self.eps)
            f = rmsnorm(h, L["ffn_norm"], self.eps)
            f = (gelu_tanh(f @ L["ffn_gate"].T) * (f @ L["ffn_up"].T)) @ L["ffn_down"].T
            h = h + rmsnorm(f, L["post_ffw_norm"], self.eps)
            x = h * L["scale"]
        z = rmsnorm(x, self.output_norm, self.eps) @ self.out.T             # [T, vocab]
        if self.softcap > 0:
            z = self.softcap * np.tanh(z / self.softcap)
        return z


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="write float32 logits [tokens x vocab] here")
    ap.add_argument("--generate", type=int, default=0, help="greedy tokens to append")
    ap.add_argument("--kv-f16", action="store_true", help="round K and V to float16")
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    model = Model(args.model, kv_f16=args.kv_f16)
    logits = model.forward(tokens)
    if args.out:
        logits.astype(np.float32).tofile(args.out)
    seq = list(tokens)
    for _ in range(args.generate):
        seq.append(int(np.argmax(model.forward(seq)[-1])))
    print(",".join(str(t) for t in seq))


if __name__ == "__main__":
    sys.exit(main())
