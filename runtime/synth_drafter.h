// Synthetic gemma4-assistant (MTP drafter) GGUF files matching the synthetic / real targets:
// "tiny-assistant" (fits synth "tiny"), "small-assistant" (fits "small"), "12b-assistant" (the
// real 12B drafter's shapes: 1024 wide, 4 layers, 16 heads, head dims 256/512, FFN 8192).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/quant/formats.h"
#include "runtime/drafter.h"

namespace qgemma {

// Throws Error for an unknown name.
DrafterConfig synth_drafter_preset(const std::string& name);
bool is_drafter_preset(const std::string& name);

// Writes a drafter with deterministic random weights (matrices of `type`; norms f32).
void synth_drafter_write(const std::string& path, const DrafterConfig& c, TensorType type,
                         uint64_t seed);

}  // namespace qgemma
