// Shared helpers for the llama.cpp comparison scripts: loads llama.cpp (the prebuilt CPU binary of
// the npm package node-llama-cpp, installed by scripts/compare/install.sh) strictly offline:
// no GPU, no source download, no build. Throws when the package or its binary is missing.
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "package.json"));

export async function loadLlama({logLevel = "error", maxThreads = undefined} = {}) {
  let mod;
  try {
    mod = await import(require.resolve("node-llama-cpp"));
  } catch (e) {
    throw new Error(`node-llama-cpp is not installed in ${here}/node_modules: ` +
                    `run scripts/compare/install.sh (${e.message})`);
  }
  const llama = await mod.getLlama({
    gpu: false,
    build: "never",         // never compile llama.cpp from source
    skipDownload: true,     // never fetch llama.cpp's source
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel,
    ...(maxThreads ? {maxThreads} : {}),
  });
  if (llama.gpu !== false || llama.buildType !== "prebuilt") {
    throw new Error(`expected the prebuilt CPU llama.cpp, got gpu=${llama.gpu} build=${llama.buildType}`);
  }
  return {mod, llama};
}

// The llama.cpp release of the loaded binary, e.g. "ggml-org/llama.cpp v0.5.0".
export function llamaVersion(llama) {
  const r = llama.llamaCppRelease;
  return `${r.repo} ${r.release}`;
}

// Parses "2,10,20" into [2, 10, 20].
export function parseIds(s) {
  return s.split(",").filter((x) => x.trim() !== "").map((x) => {
    const v = Number(x);
    if (!Number.isInteger(v) || v < 0) throw new Error(`'${x}' is not a token id`);
    return v;
  });
}

// Minimal "--key value" / "--flag" argument parser.
export function parseArgs(argv, spec) {
  const out = {...spec};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument '${a}'`);
    const k = a.slice(2);
    if (!(k in spec)) throw new Error(`unknown option '${a}'`);
    if (typeof spec[k] === "boolean") {
      out[k] = true;
    } else {
      if (i + 1 >= argv.length) throw new Error(`option '${a}' needs a value`);
      out[k] = typeof spec[k] === "number" ? Number(argv[++i]) : argv[++i];
    }
  }
  return out;
}
