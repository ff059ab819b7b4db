//! The text lines without colours (a file, a pipe, journald: where a server's logs go), exactly as
//! tracing-subscriber's default format writes them: `timestamp LEVEL span{fields}: target: fields`,
//! the message's control characters escaped, other values as `name=value` with strings quoted
//! (`{:?}`). Its own formatter cost a call ~7k instructions more than these (`bench/callgrind.sh`
//! with `BENCH_LOG_FORMAT=text`): every piece goes through a `write!`, the timestamp is worked out
//! from scratch for every line. On a terminal, tracing-subscriber's coloured format is used.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    time::SystemTime,
};

use tracing::{
    Event, Level, Subscriber,
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
pub(super) struct TextLine;

/// A span's fields, as the event's are written.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut pairs = Pairs { out: String::new(), first: true };
        fields.record(&mut pairs);
        writer.write_str(&pairs.out)
    }
}

thread_local! {
    /// The line being written (reused: no allocation per line once grown).
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        LINE.with_borrow_mut(|line| {
            line.clear();
            let mut stamp = Vec::with_capacity(32);
            super::timestamp(&mut stamp, SystemTime::now());
            line.push_str(std::str::from_utf8(&stamp).unwrap_or_default());
            line.push(' ');
            line.push_str(match *meta.level() {
                Level::TRACE => "TRACE",
                Level::DEBUG => "DEBUG",
                Level::INFO => " INFO",
                Level::WARN => " WARN",
                Level::ERROR => "ERROR",
            });
            line.push(' ');
            if let Some(scope) = ctx.event_scope() {
                let mut seen = false;
                for span in scope.from_root() {
                    seen = true;
                    line.push_str(span.name());
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                        && !fields.is_empty()
                    {
                        line.push('{');
                        line.push_str(fields);
                        line.push('}');
                    }
                    line.push(':');
                }
                if seen {
                    line.push(' ');
                }
            }
            line.push_str(meta.target());
            line.push_str(": ");
            let mut pairs = Pairs { out: std::mem::take(line), first: true };
            event.record(&mut pairs);
            pairs.out.push('\n');
            let written = writer.write_str(&pairs.out);
            *line = pairs.out;
            written
        })
    }
}

/// Fields as `name=value`, separated by spaces; the message bare.
struct Pairs {
    out: String,
    first: bool,
}

impl Pairs {
    fn pad(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(' ');
        }
    }

    /// `name=` (a raw identifier's `r#` dropped).
    fn name(&mut self, name: &str) {
        self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('=');
    }
}

impl Visit for Pairs {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.pad();
            let _ = Sanitized(&mut self.out).write_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_debug(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_debug(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_debug(field, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The error, then (when it has any) its sources as a list.
        let mut text = String::new();
        let _ = write!(Sanitized(&mut text), "{value}");
        if let Some(source) = value.source() {
            let _ = write!(text, " {}.sources=[", field.name());
            let mut current = Some(source);
            let mut first = true;
            while let Some(error) = current {
                if !std::mem::replace(&mut first, false) {
                    text.push_str(", ");
                }
                let _ = write!(Sanitized(&mut text), "{error}");
                current = error.source();
            }
            text.push(']');
        }
        self.record_debug(field, &format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // What the `log` crate's records carry about themselves is in the metadata already.
        if name.starts_with("log.") {
            return;
        }
        self.pad();
        if name == "message" {
            let _ = write!(Sanitized(&mut self.out), "{value:?}");
        } else {
            self.name(name);
            let _ = write!(self.out, "{value:?}");
        }
    }
}

/// Writes through, with the control characters a terminal would act on written as escapes.
struct Sanitized<'a>(&'a mut String);

impl fmt::Write for Sanitized<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\x1b' => self.0.push_str("\\x1b"),
                '\x07' => self.0.push_str("\\x07"),
                '\x08' => self.0.push_str("\\x08"),
                '\x0c' => self.0.push_str("\\x0c"),
                '\x7f' => self.0.push_str("\\x7f"),
                c if ('\u{80}'..='\u{9f}').contains(&c) => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}
