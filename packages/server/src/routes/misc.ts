/** TDB's small utility routes. */
import { GROUP_IDS } from "@tdb/attribution";
import { HttpError, validationError } from "../http.js";
import { defineRoute, type Route } from "./route.js";

export const miscRoutes: Route[] = [
  defineRoute({
    path: "/force_client_code_generation",
    methods: ["GET"],
    tag: "hello_world",
    summary: "Exists so that client code generators emit the GroupId enum (as in TDB).",
    query: [{ name: "group_id", required: true, schema: { type: "string", enum: [...GROUP_IDS] } }],
    responseJsonSchema: { type: "null" },
    errors: [],
    handle: (_app, _body, info) => {
      const groupId = info.query.get("group_id");
      if (groupId === null || !(GROUP_IDS as readonly string[]).includes(groupId)) {
        throw validationError("Invalid query", [
          {
            loc: ["query", "group_id"],
            msg: `group_id must be one of ${GROUP_IDS.join(", ")}`,
            type: groupId === null ? "missing" : "enum",
          },
        ]);
      }
      return null;
    },
  }),
  defineRoute({
    path: "/dump_memory_snapshot",
    methods: ["GET"],
    tag: "memory",
    summary: "CUDA memory snapshots (TDB); there is no CUDA here, so always 400 as in TDB without the flag.",
    responseJsonSchema: { type: "string" },
    errors: [400],
    handle: () => {
      throw new HttpError(400, "The cuda_memory_debugging flag must be set to dump a memory snapshot");
    },
  }),
];
