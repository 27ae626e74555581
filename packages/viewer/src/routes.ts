/** URL paths of the viewer (TDB's): `/`, `/:model/tdb_alpha`, `/:model/:nodeType/:layer/:index`. */
export type Route =
  | { page: "welcome" }
  | { page: "tdb"; model: string }
  | { page: "node"; model: string; nodeType: string; layer: number; index: number }
  | { page: "notFound" };

const segment = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

export function matchRoute(pathname: string): Route {
  const parts = pathname.split("/").filter((p) => p !== "");
  if (parts.length === 0) return { page: "welcome" };
  if (parts.length === 2 && parts[1] === "tdb_alpha") return { page: "tdb", model: segment(parts[0]) };
  if (parts.length === 4 && /^\d+$/.test(parts[2]) && /^\d+$/.test(parts[3])) {
    return {
      page: "node",
      model: segment(parts[0]),
      nodeType: segment(parts[1]),
      layer: Number(parts[2]),
      index: Number(parts[3]),
    };
  }
  return { page: "notFound" };
}
