//! REST routes derived from the descriptors' `google.api.http` rules: path templates parsed
//! once at start, matched by specificity (a literal beats a variable beats `**`), never by
//! declaration order.

use std::{collections::BTreeSet, sync::Arc};

use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

use crate::proto::{google::api::HttpRule, google::api::http_rule::Pattern, zitadel::protoc_gen_zitadel::v2::Options};

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*` or a `{var}` matching one segment.
    One,
    /// `**`: zero or more segments.
    Many,
}

/// A variable: its field path and the segments it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: String,
    start: usize,
    /// Number of template segments it covers.
    len: usize,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: MethodDescriptor,
    pub http_method: Method,
    template: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
    /// `*`, a field name, or empty for no body.
    pub body: String,
    pub response_body: String,
    /// The HTTP status of a success (ZITADEL's `http_response.success_code`, else 200).
    pub success_code: u16,
    /// The gRPC path of the method (`/<package.Service>/<Method>`), made once.
    pub grpc_path: http::uri::PathAndQuery,
    /// Specificity (see `rank`), computed once.
    rank: Vec<u8>,
}

/// A matched route with its path variables (percent-decoded).
#[derive(Debug, Clone)]
pub struct Matched {
    pub route: Arc<Route>,
    pub variables: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum RouteError {
    /// No rule matches the path.
    NotFound,
    /// Some rule matches the path, none with this method.
    MethodNotAllowed(Vec<Method>),
    /// A path segment holds a broken percent-escape.
    BadEscape(String),
}

#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Arc<Route>>,
    verbs: BTreeSet<String>,
}

impl Routes {
    /// Reads every `google.api.http` rule of every service in `pool`. Two rules with the same
    /// method, template and verb are an error naming both RPCs.
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        let http_ext = pool.get_extension_by_name("google.api.http");
        let options_ext = pool.get_extension_by_name("zitadel.protoc_gen_zitadel.v2.options");
        let mut routes = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                let Some(rule) = http_ext.as_ref().and_then(|ext| extension_message::<HttpRule>(&options, ext)) else {
                    continue;
                };
                let success_code = options_ext
                    .as_ref()
                    .and_then(|ext| extension_message::<Options>(&options, ext))
                    .and_then(|o| o.http_response)
                    .map_or(200, |r| u16::try_from(r.success_code).unwrap_or(200));
                for rule in std::iter::once(rule.clone()).chain(rule.additional_bindings) {
                    routes.push(Arc::new(Route::new(method.clone(), &rule, success_code)?));
                }
            }
        }
        for (i, a) in routes.iter().enumerate() {
            if let Some(b) = routes[i + 1..]
                .iter()
                .find(|b| a.http_method == b.http_method && a.segments == b.segments && a.verb == b.verb)
            {
                anyhow::bail!(
                    "conflicting HTTP rules: {} {} is bound by both {} and {}",
                    a.http_method,
                    a.template,
                    a.method.full_name(),
                    b.method.full_name()
                );
            }
        }
        let verbs = routes.iter().filter_map(|r| r.verb.clone()).collect();
        Ok(Self { routes, verbs })
    }

    /// Every route, in the descriptors' order (the OpenAPI document lists them).
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|r| r.as_ref())
    }

    /// The route for `method` and `path` (the raw path, without query).
    pub fn find<'a>(&'a self, method: &Method, path: &'a str) -> Result<Matched, RouteError> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(RouteError::NotFound);
        };
        // Split a `:verb` off the last segment only where some rule declares that verb.
        let (rest_no_verb, verb) = match rest.rsplit_once(':') {
            Some((head, verb)) if !verb.contains('/') && self.verbs.contains(verb) => (head, Some(verb)),
            _ => (rest, None),
        };
        // Split once for the routes without a verb, once for those with one.
        let plain: Vec<&str> = rest.split('/').collect();
        let verbed: Vec<&str> = if verb.is_some() { rest_no_verb.split('/').collect() } else { Vec::new() };
        let matching = |route: &'a Arc<Route>| {
            let (raw, route_verb) = if route.verb.is_some() { (&verbed, verb) } else { (&plain, None) };
            if route.verb.as_deref() != route_verb {
                return None;
            }
            route.match_segments(raw).map(|spans| (route, raw.as_slice(), spans))
        };
        // The request's method first (a comparison), the path only for the routes that take it.
        let mut best: Option<(&Arc<Route>, &[&str], Vec<usize>)> = None;
        for (route, raw, spans) in self.routes.iter().filter(|route| route.http_method == method).filter_map(matching) {
            if best.as_ref().is_some_and(|(b, ..)| b.rank >= route.rank) {
                continue;
            }
            best = Some((route, raw, spans));
        }
        if let Some((route, raw, spans)) = best {
            let mut variables = Vec::with_capacity(route.variables.len());
            for var in &route.variables {
                let (start, end) = (spans[var.start], spans[var.start + var.len]);
                variables.push((var.field_path.clone(), decode_segments(&raw[start..end])?));
            }
            return Ok(Matched { route: Arc::clone(route), variables });
        }
        // No rule with this method: 405 naming the methods some rule takes here, else 404.
        let allowed: BTreeSet<&str> =
            self.routes.iter().filter_map(matching).map(|(route, ..)| route.http_method.as_str()).collect();
        if allowed.is_empty() {
            Err(RouteError::NotFound)
        } else {
            Err(RouteError::MethodNotAllowed(allowed.iter().filter_map(|m| m.parse().ok()).collect()))
        }
    }
}

/// Reads a message-typed extension from method options.
fn extension_message<T: prost::Message + Default>(
    options: &prost_reflect::DynamicMessage,
    ext: &prost_reflect::ExtensionDescriptor,
) -> Option<T> {
    if !options.has_extension(ext) {
        return None;
    }
    match options.get_extension(ext).as_ref() {
        Value::Message(m) => m.transcode_to::<T>().ok(),
        _ => None,
    }
}

fn decode_segments(raw: &[&str]) -> Result<String, RouteError> {
    // The common case: one segment with nothing escaped.
    if let [one] = raw
        && !one.contains('%')
    {
        return Ok((*one).to_owned());
    }
    let joined = raw.join("/");
    percent_decode_strict(&joined).ok_or(RouteError::BadEscape(joined))
}

/// Percent-decodes `s` (`+` stays `+`); `None` on a broken escape or invalid UTF-8.
pub fn percent_decode_strict(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
        }
    }
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

impl Route {
    fn new(method: MethodDescriptor, rule: &HttpRule, success_code: u16) -> anyhow::Result<Self> {
        let (http_method, template) = match &rule.pattern {
            Some(Pattern::Get(t)) => (Method::GET, t.clone()),
            Some(Pattern::Put(t)) => (Method::PUT, t.clone()),
            Some(Pattern::Post(t)) => (Method::POST, t.clone()),
            Some(Pattern::Delete(t)) => (Method::DELETE, t.clone()),
            Some(Pattern::Patch(t)) => (Method::PATCH, t.clone()),
            Some(Pattern::Custom(c)) => (Method::from_bytes(c.kind.as_bytes())?, c.path.clone()),
            None => anyhow::bail!("{}: google.api.http rule without a pattern", method.full_name()),
        };
        let (segments, variables, verb) = parse_template(&template)
            .map_err(|e| anyhow::anyhow!("{}: bad path template `{template}`: {e}", method.full_name()))?;
        let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name()).parse()?;
        Ok(Self {
            rank: Self::rank(&segments),
            grpc_path,
            method,
            http_method,
            template,
            segments,
            variables,
            verb,
            body: rule.body.clone(),
            response_body: rule.response_body.clone(),
            success_code,
        })
    }

    /// Matches raw path segments; returns, per template segment boundary, the index into `raw`.
    fn match_segments(&self, raw: &[&str]) -> Option<Vec<usize>> {
        fn go(segs: &[Segment], raw: &[&str], at: usize, spans: &mut Vec<usize>) -> bool {
            spans.push(at);
            let Some((first, rest)) = segs.split_first() else {
                if at == raw.len() {
                    return true;
                }
                spans.pop();
                return false;
            };
            let ok = match first {
                Segment::Literal(l) => {
                    raw.get(at).is_some_and(|s| {
                        if s.contains('%') { percent_decode_strict(s).as_deref() == Some(l.as_str()) } else { s == l }
                    }) && go(rest, raw, at + 1, spans)
                }
                Segment::One => raw.get(at).is_some_and(|s| !s.is_empty()) && go(rest, raw, at + 1, spans),
                Segment::Many => (at..=raw.len()).rev().any(|end| {
                    raw[at..end].iter().all(|s| !s.is_empty()) && {
                        let mark = spans.len();
                        let ok = go(rest, raw, end, spans);
                        if !ok {
                            spans.truncate(mark);
                        }
                        ok
                    }
                }),
            };
            if !ok {
                spans.pop();
            }
            ok
        }
        let mut spans = Vec::with_capacity(self.segments.len() + 1);
        go(&self.segments, raw, 0, &mut spans).then_some(spans)
    }

    /// Specificity: per segment, a literal (2) beats one-segment (1) beats `**` (0).
    fn rank(segments: &[Segment]) -> Vec<u8> {
        segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::One => 1,
                Segment::Many => 0,
            })
            .collect()
    }

    /// Field paths bound by path variables.
    pub fn path_fields(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field_path.as_str())
    }

    /// The template as OpenAPI writes a path, and its placeholders in order. A variable of one
    /// segment is one placeholder named by its field path (`{session_id}`); in a variable with a
    /// pattern (`{name=shelves/*}`) the literals stay in the path and each wildcard is a
    /// placeholder; a bare `*` or `**` binds no field (the server ignores its value).
    pub fn openapi_path(&self) -> (String, Vec<Placeholder<'_>>) {
        let mut path = String::new();
        let mut placeholders = Vec::new();
        for (at, segment) in self.segments.iter().enumerate() {
            path.push('/');
            let variable = self.variables.iter().find(|v| (v.start..v.start + v.len).contains(&at));
            let Segment::Literal(literal) = segment else {
                let (name, field_path, pattern) = match variable {
                    Some(v) if v.len == 1 => (v.field_path.clone(), Some(v.field_path.as_str()), None),
                    Some(v) => {
                        let wildcards = self.segments[v.start..v.start + v.len]
                            .iter()
                            .filter(|s| !matches!(s, Segment::Literal(_)))
                            .count();
                        let name = if wildcards == 1 { v.field_path.clone() } else { format!("{}_{at}", v.field_path) };
                        (name, Some(v.field_path.as_str()), Some(self.pattern(v)))
                    }
                    None => (format!("segment{at}"), None, None),
                };
                path.push_str(&format!("{{{name}}}"));
                placeholders.push(Placeholder { name, field_path, pattern, many: *segment == Segment::Many });
                continue;
            };
            path.push_str(literal);
        }
        if path.is_empty() {
            path.push('/');
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        (path, placeholders)
    }

    /// A variable's segment pattern as the template wrote it (`shelves/*`).
    fn pattern(&self, v: &Variable) -> String {
        let parts: Vec<&str> = self.segments[v.start..v.start + v.len]
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::One => "*",
                Segment::Many => "**",
            })
            .collect();
        parts.join("/")
    }
}

/// A placeholder of [`Route::openapi_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder<'a> {
    pub name: String,
    /// The field it sets, if any.
    pub field_path: Option<&'a str>,
    /// When it is only part of its variable: the variable's pattern (the field is set to the
    /// matched segments, literals included).
    pub pattern: Option<String>,
    /// `**`: any number of segments, which OpenAPI cannot express.
    pub many: bool,
}

type Parsed = (Vec<Segment>, Vec<Variable>, Option<String>);

/// Parses `/v2/sessions/{session_id}`, `{name=projects/*/things/**}`, `...:verb`.
fn parse_template(template: &str) -> Result<Parsed, String> {
    let body = template.strip_prefix('/').ok_or("must start with /")?;
    // The verb follows the last `:` outside braces.
    let (path, verb) = {
        let mut depth = 0;
        let mut split = None;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => split = Some(i),
                _ => {}
            }
        }
        match split {
            Some(i) => (&body[..i], Some(body[i + 1..].to_owned())),
            None => (body, None),
        }
    };
    let mut segments = Vec::new();
    let mut variables = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').ok_or("unclosed {")?;
            let (field_path, pattern) = match inner[..close].split_once('=') {
                Some((f, p)) => (f.to_owned(), p.to_owned()),
                None => (inner[..close].to_owned(), "*".to_owned()),
            };
            let start = segments.len();
            for part in pattern.split('/') {
                segments.push(parse_plain(part)?);
            }
            variables.push(Variable { field_path, start, len: segments.len() - start });
            rest = &inner[close + 1..];
        } else {
            let end = rest.find('/').unwrap_or(rest.len());
            segments.push(parse_plain(&rest[..end])?);
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('/').unwrap_or(rest);
    }
    Ok((segments, variables, verb))
}

fn parse_plain(part: &str) -> Result<Segment, String> {
    match part {
        "" => Err("empty segment".into()),
        "*" => Ok(Segment::One),
        "**" => Ok(Segment::Many),
        p if p.contains(['{', '}', '*']) => Err(format!("bad segment `{p}`")),
        p => Ok(Segment::Literal(p.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        Routes::from_pool(&pool).unwrap()
    }

    fn name(r: Result<Matched, RouteError>) -> String {
        r.map(|m| m.route.method.name().to_owned()).unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn literal_beats_variable_and_method_decides() {
        let r = routes();
        assert_eq!(name(r.find(&Method::POST, "/v2/sessions/search")), "ListSessions");
        assert_eq!(name(r.find(&Method::GET, "/v2/sessions/search")), "GetSession");
        assert_eq!(name(r.find(&Method::POST, "/v2/sessions")), "CreateSession");
        assert_eq!(name(r.find(&Method::DELETE, "/v2/sessions/abc")), "DeleteSession");
    }

    #[test]
    fn variables_are_percent_decoded() {
        let r = routes();
        let m = r.find(&Method::GET, "/v2/sessions/a%20b+c").unwrap();
        assert_eq!(m.variables, vec![("session_id".to_owned(), "a b+c".to_owned())]);
        assert!(matches!(r.find(&Method::GET, "/v2/sessions/%zz"), Err(RouteError::BadEscape(_))));
        assert!(matches!(r.find(&Method::GET, "/v2/sessions/abc%"), Err(RouteError::BadEscape(_))));
    }

    #[test]
    fn unmatched_paths_and_methods() {
        let r = routes();
        for path in ["/v2/sessions/", "/v2/sessions//x", "/v2/sessions/a/b", "/v3/x", "/"] {
            assert!(matches!(r.find(&Method::GET, path), Err(RouteError::NotFound)), "{path}");
        }
        match r.find(&Method::PUT, "/v2/sessions/abc") {
            Err(RouteError::MethodNotAllowed(m)) => {
                assert_eq!(m, vec![Method::DELETE, Method::GET, Method::PATCH])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn templates_with_wildcards_and_verbs() {
        let (segs, vars, verb) = parse_template("/v1/{name=projects/*/things/**}:cancel").unwrap();
        assert_eq!(segs.len(), 5);
        assert_eq!(vars[0].len, 4);
        assert_eq!(verb.as_deref(), Some("cancel"));
    }

    #[test]
    fn openapi_paths_keep_literals_and_name_each_placeholder() {
        let r = routes();
        let get = r.find(&Method::GET, "/v2/sessions/abc").unwrap();
        let (path, placeholders) = get.route.openapi_path();
        assert_eq!(path, "/v2/sessions/{session_id}");
        assert_eq!(placeholders[0].field_path, Some("session_id"));
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let method = pool.services().next().unwrap().methods().next().unwrap();
        let rule = |path: &str| HttpRule { pattern: Some(Pattern::Get(path.into())), ..Default::default() };
        let route = Route::new(method.clone(), &rule("/v1/{name=shelves/*/books/*}/x/*:cancel"), 200).unwrap();
        let (path, placeholders) = route.openapi_path();
        assert_eq!(path, "/v1/shelves/{name_2}/books/{name_4}/x/{segment6}:cancel");
        assert_eq!(placeholders[0].pattern.as_deref(), Some("shelves/*/books/*"));
        assert_eq!(placeholders[2].field_path, None);
    }
}
