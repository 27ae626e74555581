/** Routes and the shared page frame. */
import { useEffect } from "react";
import { NodePage } from "./node/NodePage.js";
import { Link, useLocation } from "./router.js";
import { matchRoute } from "./routes.js";
import { TdbPage } from "./tdb/TdbPage.js";
import { Welcome } from "./Welcome.js";

export function App() {
  const { pathname } = useLocation();
  const route = matchRoute(pathname);
  useEffect(() => {
    document.title =
      route.page === "tdb"
        ? `TDB · ${route.model}`
        : route.page === "node"
          ? `${route.nodeType} L${route.layer} #${route.index} · ${route.model}`
          : "Transformer Debugger";
  }, [route]);
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/" className="brand">
          <svg className="logo" viewBox="0 0 20 20" aria-hidden="true" width="18" height="18">
            <circle cx="8" cy="8" r="5.5" fill="none" stroke="currentColor" strokeWidth="2.2" />
            <path d="M12 12l5.5 5.5" stroke="currentColor" strokeWidth="2.6" strokeLinecap="round" />
          </svg>{" "}
          Transformer Debugger
        </Link>
        {route.page !== "welcome" && route.page !== "notFound" && (
          <nav className="crumbs" aria-label="Breadcrumb">
            <span className="muted">/</span>
            <Link href={`/${encodeURIComponent(route.model)}/tdb_alpha`}>{route.model}</Link>
            {route.page === "node" && (
              <>
                <span className="muted">/</span>
                <span>
                  {route.nodeType} L{route.layer} #{route.index}
                </span>
              </>
            )}
          </nav>
        )}
        <nav className="toplinks" aria-label="Help">
          <a href="https://github.com/openai/transformer-debugger#readme" target="_blank" rel="noreferrer">
            Introduction
          </a>
          <a
            href="https://github.com/openai/transformer-debugger/blob/main/terminology.md"
            target="_blank"
            rel="noreferrer"
          >
            Terminology
          </a>
        </nav>
      </header>
      <main id="main">
        {route.page === "welcome" && <Welcome />}
        {route.page === "tdb" && <TdbPage key={route.model} model={route.model} />}
        {route.page === "node" && (
          <NodePage
            key={`${route.model}/${route.nodeType}`}
            model={route.model}
            nodeTypeSegment={route.nodeType}
            layer={route.layer}
            index={route.index}
          />
        )}
        {route.page === "notFound" && (
          <div className="page">
            <h1>Page not found</h1>
            <p>
              <Link href="/">Go to the welcome page</Link>
            </p>
          </div>
        )}
      </main>
    </>
  );
}
