#!/usr/bin/env node
// llama.cpp's prompt processing (pp) and generation (tg) speed on a GGUF file, measured like
// `qgemma bench` (llama-bench's conventions) and printed in the same markdown table:
//
//   node scripts/compare/llamacpp-bench.mjs --model FILE [-p 128] [-n 32] [-r 3] [-t 2]
//
// pp N: N seeded random tokens evaluated in one call from an empty sequence (batch = N, up to 512
//       per ubatch as llama-bench), tokens / second of the call.
// tg N: from an empty sequence, one random token, then N decoding steps of one token each, each
//       picking the greedy (temperature 0) token, as `qgemma bench` does; N / seconds.
// One warm-up run of each test first (weights paged in), then -r repetitions; mean ± sample
// stddev. llama.cpp runs with its defaults otherwise (f16 KV cache, flash attention "auto",
// mmap, CPU weight repacking). Uses the prebuilt CPU binary of node-llama-cpp
// (scripts/compare/install.sh) offline.
import fs from "node:fs";

import {loadLlama, llamaVersion} from "./llamacpp.mjs";

const opt = {model: "", p: 512, n: 128, r: 5, t: 2};
const argv = process.argv.slice(2);
const names = {"-m": "model", "--model": "model", "-p": "p", "--n-prompt": "p", "-n": "n",
               "--n-gen": "n", "-r": "r", "--repetitions": "r", "-t": "t", "--threads": "t"};
for (let i = 0; i < argv.length; i += 2) {
  const k = names[argv[i]];
  if (!k || i + 1 >= argv.length) {
    console.error("usage: llamacpp-bench.mjs --model FILE [-p N] [-n N] [-r N] [-t N]");
    process.exit(2);
  }
  opt[k] = k === "model" ? argv[i + 1] : Number(argv[i + 1]);
}
if (!opt.model || !fs.existsSync(opt.model)) {
  console.error(`llamacpp-bench: model file '${opt.model}' not found`);
  process.exit(2);
}

const {mod, llama} = await loadLlama({maxThreads: opt.t});
const model = await llama.loadModel({modelPath: opt.model, gpuLayers: 0});
const ctxSize = Math.max(opt.p, opt.n) + 16;
const context = await model.createContext({
  contextSize: ctxSize,
  batchSize: Math.max(1, Math.min(opt.p, 512)),
  threads: opt.t,
  sequences: 1,
});
const seq = context.getSequence();

// Vocabulary size, parameter count and weight type from the GGUF header.
const info = model.fileInfo;
const vocab = info.metadata?.tokenizer?.ggml?.tokens?.length ?? 256;
let params = 0;
const typeCount = new Map();
for (const t of info.tensorInfo ?? []) {
  const n = t.dimensions.reduce((a, d) => a * Number(d), 1);
  params += n;
  if (t.name === "blk.0.ffn_gate.weight") typeCount.set("ffn", mod.GgmlType?.[t.ggmlType] ?? t.ggmlType);
}
const wtype = String(typeCount.get("ffn") ?? "?").toLowerCase();

let rng = 1234;
function rand() {  // xorshift32
  rng ^= rng << 13; rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5; rng >>>= 0;
  return rng;
}
const randomTokens = (n) => Array.from({length: n}, () => rand() % vocab);

async function runPrompt(n) {
  await seq.clearHistory();
  const ids = randomTokens(n);
  const t0 = process.hrtime.bigint();
  await seq.evaluateWithoutGeneratingNewTokens(ids);
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}
async function runGen(n) {
  await seq.clearHistory();
  let tok = rand() % vocab;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; ++i) {
    const r = await seq.controlledEvaluate(
        [[tok, {generateNext: {token: true, options: {temperature: 0}}}]]);
    tok = r[0].next.token;
  }
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const results = [];
if (opt.p > 0) results.push({test: `pp${opt.p}`, run: () => runPrompt(opt.p), ts: []});
if (opt.n > 0) results.push({test: `tg${opt.n}`, run: () => runGen(opt.n), ts: []});
if (opt.p > 0) await runPrompt(opt.p);  // warm-up
if (opt.n > 0) await runGen(Math.min(opt.n, 4));
for (let r = 0; r < opt.r; ++r) {
  for (const res of results) res.ts.push(await res.run());
}

const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
const sd = (v) => {
  if (v.length < 2) return 0;
  const m = mean(v);
  return Math.sqrt(v.reduce((a, b) => a + (b - m) * (b - m), 0) / (v.length - 1));
};
const gib = 1024 ** 3;
const size = model.size >= gib ? `${(model.size / gib).toFixed(2)} GiB`
                               : `${(model.size / 2 ** 20).toFixed(1)} MiB`;
const p = params >= 1e9 ? `${(params / 1e9).toFixed(2)} B` : `${(params / 1e6).toFixed(2)} M`;
const name = `gemma4 ${p} ${wtype}`;
const backend = `llama.cpp CPU (${llamaVersion(llama).split(" ").pop()})`;
console.log("| model | size | params | backend | threads | test | t/s |");
console.log("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
for (const r of results) {
  console.log(`| ${name} | ${size} | ${p} | ${backend} | ${opt.t} | ${r.test} | ` +
              `${mean(r.ts).toFixed(2)} ± ${sd(r.ts).toFixed(2)} |`);
}
const rss = process.resourceUsage().maxRSS * 1024;  // the node process, llama.cpp included
console.log(`\npeak RSS: ${rss >= gib ? `${(rss / gib).toFixed(2)} GiB` : `${(rss / 2 ** 20).toFixed(1)} MiB`}` +
            " (node + llama.cpp)");
console.log(`llama.cpp ${llamaVersion(llama)} (node-llama-cpp prebuilt CPU binary), threads in use: ` +
            `${context.currentThreads}, flash attention: ` +
            `${context.flashAttention}, samples t/s: ` +
            results.map((r) => `${r.test} [${r.ts.map((x) => x.toFixed(2)).join(", ")}]`).join(" "));
await context.dispose();
await model.dispose();
await llama.dispose();
