#!/bin/sh
# The GPU benchmark on a lent machine without Node or network (the `device` tool), from what
# `node scripts/gpu-pack.mjs` put in .gpu/ (carried: carry ['.gpu']):
#   sh bench/gpu_run.sh "$OUT" [bench options, e.g. --quick]
# Installs the Vulkan and GL loaders where the machine lacks them, unpacks Node and Dawn, points the loader
# at NVIDIA's Vulkan driver where one is installed and no driver was chosen, and runs the Node
# benchmark: every kernel variant checked against the reference first (exit 1 if one fails), then
# roofs, tuning, shapes (with onnxruntime-web's WebGPU MultiHeadAttention beside ours) and the
# layer; results (.json, .md) go to the folder given.
set -eu
out=${1:?usage: sh bench/gpu_run.sh OUT_DIR [bench options]}
shift
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libGLdispatch.so.0; then
  for f in .gpu/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# the driver's own libraries (libGLX_nvidia, which its Vulkan ICD names) where they are mounted
if [ -d /usr/local/nvidia/lib64 ]; then
  export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/nvidia/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
xz -dc .gpu/node.xz >/tmp/webgpu-attention-node
chmod +x /tmp/webgpu-attention-node
xz -dc .gpu/dawn.node.xz >.gpu/node_modules/webgpu/dist/linux-x64/dawn.node
xz -dc .gpu/ort-wasm.xz >.gpu/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$icd" ]; then
  export VK_DRIVER_FILES="$icd"
fi
BENCH_SOURCES=$(cat .gpu/sources) exec /tmp/webgpu-attention-node .gpu/bench/bench-node.mjs --out "$out" "$@"
