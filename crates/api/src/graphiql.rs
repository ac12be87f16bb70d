//! GraphiQL at `GET /graphql`, with React, ReactDOM and GraphiQL embedded in the binary (see
//! `crates/api/assets/graphiql/README.md` for where each file comes from): the page loads nothing from another
//! host, so it works offline and under its own strict Content-Security-Policy.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Where the assets are served; the page refers to them by these absolute paths.
pub const ASSETS_PATH: &str = "/graphiql/assets";

/// Scripts, styles and fetches from this server only; no inline script. Inline styles stay allowed because
/// GraphiQL's editor sets some.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

const PAGE: &str = include_str!("../assets/graphiql/graphiql.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every embedded asset: name, content type, bytes. Names carry the version, so they may be cached for good.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql-3.8.3.min.js",
        JS,
        include_bytes!("../assets/graphiql/graphiql-3.8.3.min.js"),
    ),
    (
        "graphiql-3.8.3.min.css",
        CSS,
        include_bytes!("../assets/graphiql/graphiql-3.8.3.min.css"),
    ),
    (
        "react-18.3.1.production.min.js",
        JS,
        include_bytes!("../assets/graphiql/react-18.3.1.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        JS,
        include_bytes!("../assets/graphiql/react-dom-18.3.1.production.min.js"),
    ),
    (
        "verdict-graphiql.js",
        JS,
        include_bytes!("../assets/graphiql/verdict-graphiql.js"),
    ),
    (
        "verdict-graphiql.css",
        CSS,
        include_bytes!("../assets/graphiql/verdict-graphiql.css"),
    ),
];

/// The names of the embedded assets.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _, _)| *name)
}

/// `GET /graphql`: the GraphiQL page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /graphiql/assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(known, _, _)| *known == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // Verdict's own two files may change with a release under the same name; the others carry their version.
    let cache = if name.starts_with("verdict-") {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        *bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_embedded_assets() {
        let referred: Vec<&str> = PAGE
            .split(['"', '\''])
            .filter(|s| s.starts_with('/') || s.contains("://"))
            .collect();
        assert!(!referred.is_empty());
        for path in referred {
            let name = path.strip_prefix(ASSETS_PATH).and_then(|p| p.strip_prefix('/'));
            assert!(
                name.is_some_and(|n| asset_names().any(|a| a == n)),
                "{path} is not an embedded asset"
            );
        }
    }
}
