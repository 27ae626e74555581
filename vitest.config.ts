import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against sources, so a change is tested without a rebuild.
    alias: [
      {
        find: /^@tdb\/tensor\/node$/,
        replacement: fileURLToPath(new URL("./packages/tensor/src/node/index.ts", import.meta.url)),
      },
      {
        find: /^@tdb\/model\/node$/,
        replacement: fileURLToPath(new URL("./packages/model/src/node/index.ts", import.meta.url)),
      },
      ...["tensor", "model", "attribution", "datasets", "explain", "server", "cli"].map((name) => ({
        find: new RegExp(`^@tdb/${name}$`),
        replacement: pkg(name),
      })),
    ],
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "tools/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
