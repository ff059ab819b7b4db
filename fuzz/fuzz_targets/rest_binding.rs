//! REST routing and binding: method, path, query and body (NUL-separated) through the routes the
//! descriptors declare, then path variables, query parameters and body into one request message.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiond::transport::{json, routes::Routes};

static ROUTES: LazyLock<Routes> =
    LazyLock::new(|| Routes::from_pool(sessiond::proto::pool()).expect("the descriptors' routes"));

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(4, |b| *b == 0);
    let (Some(method), Some(path)) = (fields.next(), fields.next()) else { return };
    let query = fields.next().and_then(|q| std::str::from_utf8(q).ok());
    let body = fields.next().unwrap_or_default();
    let (Ok(method), Ok(path)) = (http::Method::from_bytes(method), std::str::from_utf8(path)) else { return };
    if let Ok(matched) = ROUTES.find(&method, path) {
        let _ = json::rest_request(&matched.route, &matched.variables, query, body);
    }
});
