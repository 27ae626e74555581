/** Deterministic uniform values in [-scale, scale) (xorshift32), for tests. */
export function randomValues(length: number, seed: number, scale = 1): Float32Array {
  let state = seed >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = ((state >>> 0) / 2147483648 - 1) * scale;
  }
  return out;
}
