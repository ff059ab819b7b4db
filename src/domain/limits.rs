//! The bounds on every size and count a caller controls, and the checks that hold requests to them:
//! past a bound, a request is refused with INVALID_ARGUMENT naming the field and the limit, before
//! anything reaches the store (every protocol and both stores give the same answer).

use std::{collections::BTreeMap, time::Duration};

use super::{
    Error, Result, Timestamp,
    password::MAX_PASSWORD_LEN,
    session::{ChallengeRequest, Checks, CreateSession, ListSessions, SessionQuery, SetSession, UserAgent, UserCheck},
};

/// Ids (session, user, creator, fingerprint) and login names, in characters: ZITADEL's rule.
pub const MAX_ID_CHARS: usize = 200;
/// Metadata keys one request sets or removes, and one session holds.
pub const MAX_METADATA_KEYS: usize = 64;
pub const MAX_METADATA_KEY_BYTES: usize = 200;
/// One metadata value (room for an ID token or a serialized claim set).
pub const MAX_METADATA_VALUE_BYTES: usize = 8 * 1024;
/// Metadata keys and values one session holds, unless `--max-metadata-bytes` says otherwise: it
/// bounds a GetSession answer (and a ListSessions page at `limit` times it).
pub const DEFAULT_MAX_METADATA_BYTES: usize = 32 * 1024;
pub const MAX_USER_AGENT_IP_BYTES: usize = 128;
pub const MAX_USER_AGENT_DESCRIPTION_BYTES: usize = 2 * 1024;
pub const MAX_USER_AGENT_HEADERS: usize = 32;
pub const MAX_USER_AGENT_HEADER_NAME_BYTES: usize = 200;
pub const MAX_USER_AGENT_HEADER_VALUES: usize = 16;
pub const MAX_USER_AGENT_HEADER_VALUE_BYTES: usize = 4 * 1024;
/// All of a user agent's text together (fingerprint, ip, description, header names and values).
pub const MAX_USER_AGENT_BYTES: usize = 16 * 1024;
/// ListSessions queries per request: each is one more condition on the database's side.
pub const MAX_QUERIES: usize = 20;
/// Ids in one ids query: a page's worth. With `MAX_QUERIES` this stays under SQLite's 32,766
/// bound parameters per statement.
pub const MAX_IDS_PER_QUERY: usize = 1000;
/// Deepest ListSessions offset: the database walks every skipped row. Deeper pages narrow the
/// query instead (a `creation_date_query` from the last session seen).
pub const MAX_OFFSET: u64 = 10_000;
/// Longest one-time code a check may carry (TOTP codes have 6 digits, SMS and email codes 8).
pub const MAX_CODE_BYTES: usize = 16;
/// Longest link template an email code request may carry.
pub const MAX_URL_TEMPLATE_BYTES: usize = 2048;
/// Longest `lifetime`, unless `--max-lifetime-secs` says otherwise: 400 days, the cap browsers
/// put on cookie lifetimes.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);
/// The span RFC 3339 can write (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z), in the
/// store's microseconds: every timestamp a session shows lies in it.
pub const EARLIEST_RENDERABLE: Timestamp = Timestamp(-62_135_596_800_000_000);
pub const LATEST_RENDERABLE: Timestamp = Timestamp(253_402_300_799_999_999);

/// The bounds an operator may change (`serve` flags); the rest are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest `lifetime` a Create or Set may ask for.
    pub max_lifetime: Duration,
    /// Most bytes of metadata (keys and values) one session holds.
    pub max_metadata_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_lifetime: DEFAULT_MAX_LIFETIME, max_metadata_bytes: DEFAULT_MAX_METADATA_BYTES }
    }
}

impl Limits {
    /// Everything a CreateSession request carries; the metadata total is checked where it merges.
    pub fn check_create(&self, request: &CreateSession) -> Result<()> {
        self.check_lifetime(request.lifetime, Timestamp::now())?;
        check_metadata_request(&request.metadata)?;
        // A new session holds only what the request sets: its total is the request's own validity.
        let set: BTreeMap<_, _> =
            request.metadata.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        self.check_metadata_total(&BTreeMap::new(), &set)?;
        check_user_agent(&request.user_agent)?;
        check_checks(&request.checks)?;
        check_challenges(&request.challenges)
    }

    /// Everything a SetSession request carries; the metadata total is checked where it merges.
    pub fn check_set(&self, request: &SetSession) -> Result<()> {
        check_session_id(&request.session_id)?;
        self.check_lifetime(request.lifetime, Timestamp::now())?;
        check_metadata_request(&request.metadata)?;
        check_checks(&request.checks)?;
        check_challenges(&request.challenges)
    }

    /// A positive lifetime, at most the configured one, ending at a time RFC 3339 can write.
    pub fn check_lifetime(&self, lifetime: Option<Duration>, now: Timestamp) -> Result<()> {
        let Some(lifetime) = lifetime else { return Ok(()) };
        let invalid = |message: String| Error::invalid_argument("SESSION-InvalidLifetime", message);
        if lifetime.is_zero() {
            return Err(invalid("lifetime must be positive".into()));
        }
        if lifetime > self.max_lifetime {
            return Err(invalid(format!("lifetime may be at most {:?}, got {lifetime:?}", self.max_lifetime)));
        }
        if now.plus(lifetime) > LATEST_RENDERABLE {
            return Err(invalid("lifetime would end after 9999-12-31T23:59:59Z".into()));
        }
        Ok(())
    }

    /// A session's metadata after a change: refused when it holds more keys or bytes than allowed
    /// and more than `before` did (a session over a since-lowered bound may still shrink).
    pub fn check_metadata_total(
        &self,
        before: &BTreeMap<String, Vec<u8>>,
        after: &BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        let bytes = |m: &BTreeMap<String, Vec<u8>>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if after.len() > MAX_METADATA_KEYS && after.len() > before.len() {
            return Err(Error::invalid_argument(
                "SESSION-InvalidMetadata",
                format!(
                    "the session would hold {} metadata keys; a session holds at most {MAX_METADATA_KEYS}",
                    after.len()
                ),
            ));
        }
        let (before_bytes, after_bytes) = (bytes(before), bytes(after));
        if after_bytes > self.max_metadata_bytes && after_bytes > before_bytes {
            return Err(Error::invalid_argument(
                "SESSION-InvalidMetadata",
                format!(
                    "the session's metadata would be {after_bytes} bytes; a session holds at most {} bytes \
                     of metadata keys and values",
                    self.max_metadata_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A session id in a request: 1 to 200 characters, no control characters.
pub fn check_session_id(id: &str) -> Result<()> {
    check_text("session_id", id, MAX_ID_CHARS, false, "SESSION-InvalidId")
}

/// The user a check names, by id or login name.
pub fn check_user_check(check: &UserCheck) -> Result<()> {
    match check {
        UserCheck::ById(id) => check_text("checks.user.user_id", id, MAX_ID_CHARS, false, "SESSION-InvalidUserCheck"),
        UserCheck::ByLoginName(name) => {
            check_text("checks.user.login_name", name, MAX_ID_CHARS, false, "SESSION-InvalidUserCheck")
        }
    }
}

/// The checks' own inputs: a user that can exist, a password argon2 will take, a code of a sane
/// length. Refused before anything is looked up, so an over-long guess never counts as an attempt.
fn check_checks(checks: &Checks) -> Result<()> {
    checks.user.as_ref().map_or(Ok(()), check_user_check)?;
    let too_long = |field: &str, max: usize| {
        Error::invalid_argument("SESSION-InvalidCheck", format!("{field} may be at most {max} bytes"))
    };
    if checks.password.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD_LEN) {
        return Err(too_long("checks.password.password", MAX_PASSWORD_LEN));
    }
    for (field, code) in [
        ("checks.totp.code", &checks.totp),
        ("checks.otp_sms.code", &checks.otp_sms),
        ("checks.otp_email.code", &checks.otp_email),
    ] {
        if code.as_ref().is_some_and(|c| c.len() > MAX_CODE_BYTES) {
            return Err(too_long(field, MAX_CODE_BYTES));
        }
    }
    Ok(())
}

/// The challenges' own inputs: the email link template is passed on to the delivery, bounded.
fn check_challenges(challenges: &ChallengeRequest) -> Result<()> {
    let template = challenges.otp_email.as_ref().and_then(|e| e.url_template.as_ref());
    if template.is_some_and(|t| t.len() > MAX_URL_TEMPLATE_BYTES || t.chars().any(char::is_control)) {
        return Err(Error::invalid_argument(
            "SESSION-InvalidChallenge",
            format!(
                "challenges.otp_email.send_code.url_template may be at most {MAX_URL_TEMPLATE_BYTES} bytes, without control characters"
            ),
        ));
    }
    Ok(())
}

/// A login name given to `users add`: what a user check can name later.
pub fn check_login_name(name: &str) -> Result<()> {
    check_text("login name", name, MAX_ID_CHARS, false, "USER-InvalidLoginName")
}

/// A required identifier or name of another request (a user id, a passkey id or name): 1 to 200
/// characters, no control characters.
pub fn check_required_text(field: &str, value: &str, id: &'static str) -> Result<()> {
    check_text(field, value, MAX_ID_CHARS, false, id)
}

/// The entries of one request's `metadata`, each on its own (the total is the merge's business).
pub fn check_metadata_request(metadata: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let invalid = |message: String| Error::invalid_argument("SESSION-InvalidMetadata", message);
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(invalid(format!(
            "metadata has {} entries; a request may set or remove at most {MAX_METADATA_KEYS}",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            return Err(invalid(format!(
                "metadata key {} is {} bytes; keys must be 1 to {MAX_METADATA_KEY_BYTES} bytes",
                shown(key),
                key.len()
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid(format!("metadata key {} holds a control character", shown(key))));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            return Err(invalid(format!(
                "metadata value of {} is {} bytes; values may be at most {MAX_METADATA_VALUE_BYTES} bytes",
                shown(key),
                value.len()
            )));
        }
    }
    Ok(())
}

/// The user agent a CreateSession describes.
pub fn check_user_agent(agent: &UserAgent) -> Result<()> {
    let invalid = |message: String| Error::invalid_argument("SESSION-InvalidUserAgent", message);
    if let Some(fingerprint) = &agent.fingerprint_id {
        check_text("user_agent.fingerprint_id", fingerprint, MAX_ID_CHARS, true, "SESSION-InvalidUserAgent")?;
    }
    let fields = [
        ("user_agent.ip", &agent.ip, MAX_USER_AGENT_IP_BYTES),
        ("user_agent.description", &agent.description, MAX_USER_AGENT_DESCRIPTION_BYTES),
    ];
    for (field, value, max) in fields {
        if let Some(value) = value.as_deref().filter(|v| v.len() > max) {
            return Err(invalid(format!("{field} is {} bytes; at most {max} are allowed", value.len())));
        }
    }
    if agent.header.len() > MAX_USER_AGENT_HEADERS {
        return Err(invalid(format!(
            "user_agent.header has {} entries; at most {MAX_USER_AGENT_HEADERS} are allowed",
            agent.header.len()
        )));
    }
    if agent.ip.as_deref().is_some_and(|ip| ip.chars().any(char::is_control)) {
        return Err(invalid("user_agent.ip must not contain control characters".into()));
    }
    for (name, values) in &agent.header {
        // What an HTTP header can carry: a name that is not empty and holds no control
        // characters, values without control characters but tab (no CR, LF or NUL).
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "user_agent.header name {} must not be empty or contain control characters",
                shown(name)
            )));
        }
        if values.iter().any(|v| v.chars().any(|c| c.is_control() && c != '\t')) {
            return Err(invalid(format!(
                "a value of user_agent.header {} contains a control character other than tab",
                shown(name)
            )));
        }
        if name.len() > MAX_USER_AGENT_HEADER_NAME_BYTES {
            return Err(invalid(format!(
                "user_agent.header name {} is {} bytes; at most {MAX_USER_AGENT_HEADER_NAME_BYTES} are allowed",
                shown(name),
                name.len()
            )));
        }
        if values.len() > MAX_USER_AGENT_HEADER_VALUES {
            return Err(invalid(format!(
                "user_agent.header {} has {} values; at most {MAX_USER_AGENT_HEADER_VALUES} are allowed",
                shown(name),
                values.len()
            )));
        }
        if let Some(value) = values.iter().find(|v| v.len() > MAX_USER_AGENT_HEADER_VALUE_BYTES) {
            return Err(invalid(format!(
                "a value of user_agent.header {} is {} bytes; at most {MAX_USER_AGENT_HEADER_VALUE_BYTES} are allowed",
                shown(name),
                value.len()
            )));
        }
    }
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let total = text(&agent.fingerprint_id)
        + text(&agent.ip)
        + text(&agent.description)
        + agent.header.iter().map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>()).sum::<usize>();
    if total > MAX_USER_AGENT_BYTES {
        return Err(invalid(format!(
            "user_agent holds {total} bytes of text; at most {MAX_USER_AGENT_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// A ListSessions request: how many queries, how many ids, which strings, how deep.
pub fn check_list(request: &ListSessions) -> Result<()> {
    let invalid = |message: String| Error::invalid_argument("SESSION-InvalidQuery", message);
    if request.offset > MAX_OFFSET {
        return Err(Error::invalid_argument(
            "SESSION-OffsetTooLarge",
            format!(
                "query.offset may be at most {MAX_OFFSET}, got {}; narrow the query (creation_date_query) instead",
                request.offset
            ),
        ));
    }
    if request.queries.len() > MAX_QUERIES {
        return Err(invalid(format!(
            "queries has {} entries; at most {MAX_QUERIES} are allowed",
            request.queries.len()
        )));
    }
    let query_text = |field: &str, value: &str, allow_empty: bool| {
        check_text(field, value, MAX_ID_CHARS, allow_empty, "SESSION-InvalidQuery")
    };
    for query in &request.queries {
        match query {
            SessionQuery::Ids(ids) => {
                if ids.len() > MAX_IDS_PER_QUERY {
                    return Err(invalid(format!(
                        "ids_query.ids has {} ids; at most {MAX_IDS_PER_QUERY} are allowed",
                        ids.len()
                    )));
                }
                ids.iter().try_for_each(|id| query_text("ids_query.ids", id, true))?;
            }
            SessionQuery::UserId(id) => query_text("user_id_query.id", id, true)?,
            SessionQuery::Creator(id) => query_text("creator_query.id", id, false)?,
            SessionQuery::UserAgentFingerprint(id) => query_text("user_agent_query.fingerprint_id", id, false)?,
            SessionQuery::CreationDate(..) | SessionQuery::ExpirationDate(..) => {}
        }
    }
    Ok(())
}

/// An id, name or query string: at most `max` characters, no control characters (PostgreSQL
/// cannot store a NUL, and none belongs in a name), empty only where `allow_empty`.
fn check_text(field: &str, value: &str, max: usize, allow_empty: bool, id: &'static str) -> Result<()> {
    if value.is_empty() && !allow_empty {
        return Err(Error::invalid_argument(id, format!("{field} must not be empty")));
    }
    if value.len() > max {
        let chars = value.chars().count();
        if chars > max {
            return Err(Error::invalid_argument(
                id,
                format!("{field} is {chars} characters; at most {max} are allowed"),
            ));
        }
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_argument(id, format!("{field} must not contain control characters")));
    }
    Ok(())
}

/// A caller's string as a message shows it: quoted, escaped, and cut after 32 characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(32) {
        Some((at, _)) => format!("{:?}…", &s[..at]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(entries: &[(&str, usize)]) -> BTreeMap<String, Vec<u8>> {
        entries.iter().map(|(k, n)| ((*k).to_owned(), vec![b'x'; *n])).collect()
    }

    #[test]
    fn ids_are_bounded_in_characters_and_refuse_control_characters() {
        assert!(check_session_id(&"é".repeat(MAX_ID_CHARS)).is_ok(), "characters, not bytes");
        let err = check_session_id(&"a".repeat(MAX_ID_CHARS + 1)).unwrap_err();
        assert_eq!(err.id, "SESSION-InvalidId");
        assert!(err.message.contains("at most 200"), "{err}");
        for bad in ["a\0b", "tab\there", "\u{7f}", "\u{85}"] {
            assert_eq!(check_session_id(bad).unwrap_err().id, "SESSION-InvalidId", "{bad:?}");
        }
        assert!(check_session_id("").is_err());
        assert!(check_login_name("zoë@example.com").is_ok());
        assert_eq!(check_login_name("a\0").unwrap_err().id, "USER-InvalidLoginName");
    }

    #[test]
    fn lifetimes_are_positive_bounded_and_renderable() {
        let limits = Limits::default();
        let now = Timestamp::now();
        assert!(limits.check_lifetime(Some(DEFAULT_MAX_LIFETIME), now).is_ok());
        let err = limits.check_lifetime(Some(DEFAULT_MAX_LIFETIME + Duration::from_secs(1)), now).unwrap_err();
        assert_eq!(err.id, "SESSION-InvalidLifetime");
        assert!(err.message.contains("at most 34560000s"), "{err}");
        assert!(limits.check_lifetime(Some(Duration::ZERO), now).is_err());
        let unbounded = Limits { max_lifetime: Duration::MAX, ..limits };
        let err = unbounded.check_lifetime(Some(Duration::from_secs(315_576_000_000)), now).unwrap_err();
        assert!(err.message.contains("9999-12-31"), "{err}");
    }

    #[test]
    fn metadata_totals_refuse_growth_past_the_bound_but_allow_shrinking() {
        let limits = Limits { max_metadata_bytes: 100, ..Limits::default() };
        let full = metadata(&[("a", 99)]);
        assert!(limits.check_metadata_total(&BTreeMap::new(), &full).is_ok(), "exactly 100 bytes");
        let over = metadata(&[("a", 99), ("b", 0)]);
        let err = limits.check_metadata_total(&full, &over).unwrap_err();
        assert_eq!(err.id, "SESSION-InvalidMetadata");
        assert!(err.message.contains("at most 100 bytes"), "{err}");
        // A session over a lowered bound may still shrink.
        let big = metadata(&[("a", 150), ("b", 50)]);
        assert!(limits.check_metadata_total(&big, &metadata(&[("a", 150)])).is_ok());
        let many: BTreeMap<_, _> = (0..=MAX_METADATA_KEYS).map(|i| (format!("k{i}"), vec![1])).collect();
        assert!(Limits::default().check_metadata_total(&BTreeMap::new(), &many).is_err());
    }

    #[test]
    fn metadata_entries_are_bounded_one_by_one() {
        assert!(check_metadata_request(&metadata(&[("k", MAX_METADATA_VALUE_BYTES)])).is_ok());
        assert!(check_metadata_request(&metadata(&[("k", MAX_METADATA_VALUE_BYTES + 1)])).is_err());
        assert!(check_metadata_request(&metadata(&[(&"k".repeat(MAX_METADATA_KEY_BYTES), 1)])).is_ok());
        let err = check_metadata_request(&metadata(&[(&"k".repeat(MAX_METADATA_KEY_BYTES + 1), 1)])).unwrap_err();
        assert!(err.message.contains("\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"…"), "cut and quoted: {err}");
        assert!(check_metadata_request(&metadata(&[("a\0b", 1)])).is_err());
        assert!(check_metadata_request(&metadata(&[("", 1)])).is_err());
    }

    #[test]
    fn user_agents_are_bounded_field_by_field_and_in_total() {
        let header = |n: usize, values: usize, size: usize| -> BTreeMap<String, Vec<String>> {
            (0..n).map(|i| (format!("h{i}"), vec!["v".repeat(size); values])).collect()
        };
        let agent = |header| UserAgent { header, ..UserAgent::default() };
        assert!(check_user_agent(&agent(header(MAX_USER_AGENT_HEADERS, 1, 1))).is_ok());
        assert!(check_user_agent(&agent(header(MAX_USER_AGENT_HEADERS + 1, 1, 1))).is_err());
        assert!(check_user_agent(&agent(header(1, MAX_USER_AGENT_HEADER_VALUES + 1, 1))).is_err());
        assert!(check_user_agent(&agent(header(1, 1, MAX_USER_AGENT_HEADER_VALUE_BYTES))).is_ok());
        assert!(check_user_agent(&agent(header(1, 1, MAX_USER_AGENT_HEADER_VALUE_BYTES + 1))).is_err());
        let err = check_user_agent(&agent(header(5, 1, MAX_USER_AGENT_HEADER_VALUE_BYTES))).unwrap_err();
        assert!(err.message.contains("at most 16384"), "{err}");
        let one = |name: &str, value: &str| agent([(name.to_owned(), vec![value.to_owned()])].into());
        assert!(check_user_agent(&one("accept-language", "de-CH,\tde;q=0.9")).is_ok(), "tab is allowed");
        for (name, value) in [("", "v"), ("x\r\ny", "v"), ("x-forwarded-for", "1.2.3.4\r\nSet-Cookie: a"), ("x", "\0")]
        {
            let err = check_user_agent(&one(name, value)).unwrap_err();
            assert_eq!(err.id, "SESSION-InvalidUserAgent", "{name:?}: {value:?}");
        }
        let ip = UserAgent { ip: Some("10.0.0.1\n".into()), ..UserAgent::default() };
        assert!(check_user_agent(&ip).unwrap_err().message.contains("user_agent.ip"));
        let fingerprint = UserAgent { fingerprint_id: Some("fp\0".into()), ..UserAgent::default() };
        assert_eq!(check_user_agent(&fingerprint).unwrap_err().id, "SESSION-InvalidUserAgent");
    }

    #[test]
    fn list_requests_are_bounded() {
        let list = |queries: Vec<SessionQuery>, offset: u64| ListSessions { queries, offset, ..Default::default() };
        assert!(check_list(&list(vec![SessionQuery::UserId("u".into()); MAX_QUERIES], MAX_OFFSET)).is_ok());
        assert!(check_list(&list(vec![SessionQuery::UserId("u".into()); MAX_QUERIES + 1], 0)).is_err());
        assert_eq!(check_list(&list(vec![], MAX_OFFSET + 1)).unwrap_err().id, "SESSION-OffsetTooLarge");
        let ids = |n: usize| SessionQuery::Ids((0..n).map(|i| i.to_string()).collect());
        assert!(check_list(&list(vec![ids(MAX_IDS_PER_QUERY)], 0)).is_ok());
        assert!(check_list(&list(vec![ids(MAX_IDS_PER_QUERY + 1)], 0)).is_err());
        assert!(check_list(&list(vec![SessionQuery::UserId("a\0".into())], 0)).is_err());
        assert!(check_list(&list(vec![SessionQuery::Creator(String::new())], 0)).is_err());
        assert!(check_list(&list(vec![SessionQuery::UserId(String::new())], 0)).is_ok());
    }
}
