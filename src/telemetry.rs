//! Logging: one structured line per call, as text or JSON, filtered with `RUST_LOG`. Lines are
//! written by a background thread so that a slow stderr never stalls a call. Text is coloured only
//! on a terminal (and never with `NO_COLOR` set): a file, a pipe or journald gets plain lines.

mod json;
#[cfg(test)]
mod tests;
mod text;

use std::io::IsTerminal as _;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber (logs go to stderr; stdout is for command output). Keep the
/// guard alive: dropping it flushes what is still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
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
