//! The JSON lines, as tracing-subscriber's own JSON format writes them (the same keys, in the
//! same places: `timestamp`, `level`, the event's fields, `target`, then `span` and `spans` with
//! each span's fields and `name`), written straight into the line. tracing-subscriber's JSON
//! format cost a GetSession ~15k instructions more than these (`bench/callgrind.sh`: 168.6k
//! against 153.6k per call): serde_json writes through an adaptor that checks every fragment for
//! UTF-8, and span fields are kept as JSON text that is parsed back for every line. These are its
//! `FormatEvent` and `FormatFields` extension points, with serde_json still doing every escape;
//! `tests.rs` holds them to tracing-subscriber's own output.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    time::SystemTime,
};

use serde::Serialize;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

/// The event format.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct JsonLine;

/// A span's fields, kept as the members of a JSON object (`"a":1,"b":"x"`, without braces).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut members = Members { out: Vec::new(), first: true, skip_log: false };
        fields.record(&mut members);
        writer.write_str(members.as_str())
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut members = Members { out: Vec::new(), first: current.fields.is_empty(), skip_log: false };
        fields.record(&mut members);
        current.fields.push_str(members.as_str());
        Ok(())
    }
}

thread_local! {
    /// The line being written (reused: no allocation per line once grown).
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        LINE.with_borrow_mut(|line| {
            line.clear();
            let mut members = Members { out: std::mem::take(line), first: false, skip_log: normalized.is_some() };
            let out = &mut members.out;
            out.extend_from_slice(b"{\"timestamp\":\"");
            super::timestamp(out, SystemTime::now());
            out.extend_from_slice(b"\",\"level\":\"");
            out.extend_from_slice(meta.level().as_str().as_bytes());
            out.push(b'"');
            event.record(&mut members);
            let out = &mut members.out;
            out.extend_from_slice(b",\"target\":");
            string(out, meta.target());
            if let Some(scope) = ctx.event_scope() {
                let mut spans = scope.from_root().peekable();
                let mut list = Vec::with_capacity(64);
                while let Some(span) = spans.next() {
                    if !list.is_empty() {
                        list.push(b',');
                    }
                    let extensions = span.extensions();
                    let fields = extensions.get::<FormattedFields<N>>().map_or("", |f| f.fields.as_str());
                    list.push(b'{');
                    list.extend_from_slice(fields.as_bytes());
                    list.extend_from_slice(if fields.is_empty() { b"\"name\":" } else { b",\"name\":" });
                    string(&mut list, span.name());
                    list.push(b'}');
                    if spans.peek().is_none() {
                        // The innermost span is also the current one.
                        let current = list.iter().rposition(|&b| b == b'{').unwrap_or(0);
                        out.extend_from_slice(b",\"span\":");
                        out.extend_from_slice(&list[current..]);
                    }
                }
                out.extend_from_slice(b",\"spans\":[");
                out.extend_from_slice(&list);
                out.push(b']');
            }
            out.extend_from_slice(b"}\n");
            let written = match std::str::from_utf8(out) {
                Ok(text) => writer.write_str(text),
                Err(_) => Err(fmt::Error),
            };
            *line = members.out;
            written
        })
    }
}

/// Writes `value` as a JSON string (serde_json escapes it).
fn string(out: &mut Vec<u8>, value: &str) {
    json(out, &value);
}

fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, and these values always serialize.
    let _ = serde_json::to_writer(out, value);
}

/// Fields as JSON object members, each preceded by a comma unless it is the first.
struct Members {
    out: Vec<u8>,
    first: bool,
    /// The event came from the `log` crate: its `log.*` fields are already in the metadata.
    skip_log: bool,
}

impl Members {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.out).unwrap_or_default()
    }

    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.skip_log && name.starts_with("log.") {
            return false;
        }
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        string(&mut self.out, name.strip_prefix("r#").unwrap_or(name));
        self.out.push(b':');
        true
    }
}

impl Visit for Members {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            string(&mut self.out, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            json(&mut self.out, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            json(&mut self.out, &value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            json(&mut self.out, &value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            json(&mut self.out, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            string(&mut self.out, &text);
        }
    }
}
