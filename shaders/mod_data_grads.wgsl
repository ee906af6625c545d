// The gradients of modData's f32 entries (attentionBackward's modDataGrad), added up by the dQ
// pass: mod_grads holds a word per word of modData's part of the rule data, each element's
// gradient in its element's place. src/ops/attention_plan.ts (modDataGradSource) generates each
// entry's `name_grad(index, x)`, which calls holdModGrad with the entry's slot. f32 bits are added
// by compare-and-swap (WGSL has no f32 atomics). Each invocation keeps a running sum per entry and
// adds it to memory only when the entry's element changes, and at its end (flushModGrads): a
// per-head scalar that every key of a row adds to costs an atomic add per row, not one per key
// (invocations adding to one word at once wait on each other). Constant: GRAD_SLOTS (the f32
// entries). Binding 8: the dQ pass binds it after dq (src/ops/attention_backward.ts).
@group(0) @binding(8) var<storage, read_write> mod_grads: array<atomic<u32>>;

// per slot: the element being summed plus 1 (0: none), and its sum
var<private> heldAt: array<u32, GRAD_SLOTS>;
var<private> heldSum: array<f32, GRAD_SLOTS>;

fn addModGrad(at: u32, x: f32) {
  var old = atomicLoad(&mod_grads[at]);
  loop {
    let swap = atomicCompareExchangeWeak(&mod_grads[at], old, bitcast<u32>(bitcast<f32>(old) + x));
    if (swap.exchanged) {
      break;
    }
    old = swap.old_value;
  }
}

fn flushModGrad(slot: u32) {
  if (heldAt[slot] != 0u) {
    addModGrad(heldAt[slot] - 1u, heldSum[slot]);
  }
  heldAt[slot] = 0u;
  heldSum[slot] = 0.0;
}

// Adds x to element `at` of mod_grads, through slot `slot`'s running sum.
fn holdModGrad(slot: u32, at: u32, x: f32) {
  if (heldAt[slot] != at + 1u) {
    flushModGrad(slot);
    heldAt[slot] = at + 1u;
  }
  heldSum[slot] += x;
}

// Adds every running sum to memory (at the invocation's end).
fn flushModGrads() {
  for (var slot = 0u; slot < GRAD_SLOTS; slot++) {
    flushModGrad(slot);
  }
}
