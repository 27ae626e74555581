// Compares the PyTorch re-derivation written by tools/tdb-maths/reproduce_cases.py with the recorded TDB cases.
// Dev-only: skipped unless that script's output folder exists (TDB_REPRODUCED_DIR, default
// test-artifacts/tdb-reproduced in this repository, git-ignored).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { diffAgainstRecorded } from "../../packages/attribution/test/case-compare.js";

const casesDir = new URL("../../../shared/fixtures/tdb-cases/", import.meta.url);
const reproducedDir =
  process.env.TDB_REPRODUCED_DIR ??
  fileURLToPath(new URL("../../test-artifacts/tdb-reproduced", import.meta.url));

describe.skipIf(!existsSync(reproducedDir))("PyTorch re-derivation of the recorded TDB cases", () => {
  for (const file of readdirSync(casesDir).filter((name) => name.startsWith("tdb_"))) {
    it(file, () => {
      const recorded = JSON.parse(readFileSync(new URL(file, casesDir), "utf8"));
      const ours = JSON.parse(readFileSync(`${reproducedDir}/${file}`, "utf8"));
      expect(ours.status).toBe(recorded.status);
      expect(diffAgainstRecorded(ours.response, recorded.response)).toEqual([]);
    });
  }
});
