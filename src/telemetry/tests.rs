//! The log lines against tracing-subscriber's own formats, field for field.

use std::{
    io,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

use std::time::SystemTime;

use super::{
    json::{JsonFields, JsonLine},
    text::{TextFields, TextLine},
};

/// Lines written, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// An error with a cause, as a dependency might log one.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store went away")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// Events of every kind of field, outside spans and inside nested ones (one of them with a
/// field recorded after it was made).
fn emit() {
    tracing::info!(
        r#type = "raw name",
        text = "quote \" backslash \\ newline \n tab \t ü 😀 \u{1}",
        negative = -7i64,
        big = u64::MAX,
        wide = i128::MIN,
        yes = true,
        ratio = 0.25f64,
        debug = ?Some("x"),
        shown = %"display",
        "first {}",
        1
    );
    let outer = tracing::info_span!("call", request_id = "id-1", later = tracing::field::Empty);
    let _outer = outer.enter();
    outer.record("later", 5u64);
    let inner = tracing::warn_span!("inner");
    let _inner = inner.enter();
    tracing::warn!(code = 14, "inside \"two\" spans");
    drop(_inner);
    tracing::error!("inside one");
    drop(_outer);
    let cause = Outer(std::io::Error::other("reset \x1b[31m by peer"));
    tracing::warn!(error = &cause as &(dyn std::error::Error + 'static), plain = %cause, "control \x1b[2J \u{85} bell \x07");
    let bare = std::io::Error::other("no source");
    tracing::info!(error = &bare as &(dyn std::error::Error + 'static));
    tracing::info!(message = "message as a field \x08", after = 1);
}

#[test]
fn lines_match_tracing_subscribers_json_format() {
    let ours = Captured::default();
    let subscriber =
        tracing_subscriber::fmt().with_writer(ours.clone()).fmt_fields(JsonFields).event_format(JsonLine).finish();
    tracing::subscriber::with_default(subscriber, emit);
    let theirs = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(theirs.clone()).json().flatten_event(true).finish();
    tracing::subscriber::with_default(subscriber, emit);

    let (ours, theirs) = (ours.lines(), theirs.lines());
    assert_eq!(ours.len(), 6);
    assert_eq!(ours.len(), theirs.len());
    for (mut ours, mut theirs) in ours.into_iter().zip(theirs) {
        let (a, b) = (ours["timestamp"].take(), theirs["timestamp"].take());
        let (a, b) = (a.as_str().unwrap(), b.as_str().unwrap());
        assert_eq!(a.len(), b.len(), "{a} against {b}");
        assert!(a.ends_with('Z') && a.as_bytes()[10] == b'T' && a.as_bytes()[19] == b'.', "{a}");
        assert_eq!(ours, theirs);
    }
}

#[test]
fn plain_text_lines_match_tracing_subscribers_text_format() {
    let ours = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(ours.clone())
        .fmt_fields(TextFields)
        .event_format(TextLine)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    let theirs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(theirs.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);

    let (ours, theirs) = (ours.text(), theirs.text());
    assert_eq!(ours.lines().count(), 6, "{ours}");
    for (a, b) in ours.lines().zip(theirs.lines()) {
        // The timestamps differ by when they were taken; their form is the same.
        let (stamp_a, a) = a.split_at(27);
        let (stamp_b, b) = b.split_at(27);
        assert!(stamp_a.ends_with('Z') && stamp_a.as_bytes()[10] == b'T', "{stamp_a}");
        assert_eq!(stamp_a.len(), stamp_b.len());
        assert_eq!(a, b);
    }
    assert_eq!(ours.lines().count(), theirs.lines().count());
    assert!(!ours.contains('\x1b'), "a control character reached the line: {ours}");
}

#[test]
fn the_timestamp_is_rfc3339_in_utc_with_microseconds() {
    let mut out = Vec::new();
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_780_000_000, 4_005_678);
    super::timestamp(&mut out, at);
    assert_eq!(std::str::from_utf8(&out).unwrap(), "2026-05-28T20:26:40.004005Z");
    // The same second again, from the cache, and the next one.
    out.clear();
    super::timestamp(&mut out, at + std::time::Duration::from_micros(990_000));
    super::timestamp(&mut out, at + std::time::Duration::from_secs(1));
    assert_eq!(std::str::from_utf8(&out).unwrap(), "2026-05-28T20:26:40.994005Z2026-05-28T20:26:41.004005Z");
}
