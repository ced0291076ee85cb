#!/usr/bin/env node
// llama.cpp's logits at every position of a token sequence, as float32 [tokens x vocab] row-major
// (the layout of `qgemma logits -o`), and optionally llama.cpp's greedy continuation.
//
//   node scripts/compare/llamacpp-logits.mjs --model FILE --tokens 2,10,20 [--out FILE.f32]
//       [--gen N] [--threads 1] [--batch 512]
//
// The ids are fed exactly as given (no BOS is added: pass it yourself, as `qgemma logits
// --tokens` expects). With --gen N, llama.cpp then decodes N greedy tokens one at a time and the
// output also holds the rows of the first N - 1 of them: rows for the sequence ids + generated
// without its last token, which is what `qgemma logits --tokens` of that sequence writes.
// Prints one JSON line: {"llama_cpp", "n_tokens", "n_vocab", "n_rows", "argmax", "generated"}
// (argmax[i]: llama.cpp's top token after row i; generated: the greedy continuation).
import fs from "node:fs";

import {loadLlama, llamaVersion, parseArgs, parseIds} from "./llamacpp.mjs";

const args = parseArgs(process.argv.slice(2),
                       {model: "", tokens: "", out: "", gen: 0, threads: 1, batch: 512});
if (!args.model || !args.tokens) {
  console.error("usage: llamacpp-logits.mjs --model FILE --tokens IDS [--out F32] [--gen N]");
  process.exit(2);
}
const ids = parseIds(args.tokens);
if (ids.length === 0) throw new Error("--tokens: no token ids");

const {llama} = await loadLlama({maxThreads: args.threads});
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0, useMmap: true});
const context = await model.createContext({
  contextSize: Math.max(ids.length + args.gen + 1, 32),
  batchSize: Math.min(args.batch, ids.length + args.gen + 1),
  threads: args.threads,
  sequences: 1,
});
const seq = context.getSequence();

// Row of raw logits in token-id order from node-llama-cpp's Map (sorted by value, all tokens).
function row(map) {
  const r = new Float32Array(map.size);
  for (const [tok, v] of map) r[tok] = v;
  return r;
}
function argmax(r) {
  let best = 0;
  for (let i = 1; i < r.length; ++i) if (r[i] > r[best]) best = i;
  return best;
}

const input = ids.map((t) => [t, {generateNext: {logits: true}}]);
const res = await seq.controlledEvaluate(input);
const rows = [];
for (let i = 0; i < ids.length; ++i) {
  const logits = res[i]?.next?.logits;
  if (!logits) throw new Error(`llama.cpp returned no logits for position ${i}`);
  rows.push(row(logits));
}
const nVocab = rows[0].length;
const generated = [];
let last = rows[rows.length - 1];
for (let g = 0; g < args.gen; ++g) {
  const tok = argmax(last);
  generated.push(tok);
  if (g + 1 === args.gen) break;
  const r = await seq.controlledEvaluate([[tok, {generateNext: {logits: true}}]]);
  last = row(r[0].next.logits);
  rows.push(last);
}
if (args.out) {
  const buf = new Float32Array(rows.length * nVocab);
  rows.forEach((r, i) => buf.set(r, i * nVocab));
  fs.writeFileSync(args.out, Buffer.from(buf.buffer));
}
console.log(JSON.stringify({
  llama_cpp: llamaVersion(llama),
  n_tokens: ids.length,
  n_vocab: nVocab,
  n_rows: rows.length,
  argmax: rows.map(argmax),
  generated,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
