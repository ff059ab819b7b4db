//! Logging: one structured line per call, as text or JSON, filtered with `RUST_LOG`. Lines are
//! written by a background thread so that a slow stderr never stalls a call. Text is coloured only
//! on a terminal (and never with `NO_COLOR` set): a file, a pipe or journald gets plain lines.

mod json;
#[cfg(test)]
mod tests;
mod text;

use std::{cell::Cell, io::IsTerminal as _, time::SystemTime};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What the background thread writes at most in one go: it buffers every line queued behind the
/// one it woke for and flushes once the queue is empty, so that a burst of calls costs one write
/// to stderr rather than one per line.
const WRITE_BATCH: usize = 64 * 1024;

/// Installs the global subscriber (logs go to stderr; stdout is for command output). Keep the
/// guard alive: dropping it flushes what is still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let stderr = std::io::BufWriter::with_capacity(WRITE_BATCH, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(stderr);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt().with_env_filter(filter).with_writer(writer).with_ansi(colour);
    let _ = match format {
        LogFormat::Text if colour => builder.try_init(),
        LogFormat::Text => builder.fmt_fields(text::TextFields).event_format(text::TextLine).try_init(),
        LogFormat::Json => builder.fmt_fields(json::JsonFields).event_format(json::JsonLine).try_init(),
    };
    guard
}

thread_local! {
    /// The last second formatted, as `YYYY-MM-DDTHH:MM:SS`: lines mostly share it.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `time` as RFC 3339 in UTC with microseconds, as tracing-subscriber's default timer writes it.
fn timestamp(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != seconds {
        let formatted = i64::try_from(seconds)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default();
        if formatted.len() != text.len() {
            // Past the year 9999: not cached, written as it is.
            out.extend_from_slice(formatted.as_bytes());
        } else {
            text.copy_from_slice(formatted.as_bytes());
            SECOND.set((seconds, text));
            out.extend_from_slice(&text);
        }
    } else {
        out.extend_from_slice(&text);
    }
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push(b'.');
    out.extend_from_slice(&digits);
    out.push(b'Z');
}
