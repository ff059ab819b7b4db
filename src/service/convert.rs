//! Protobuf messages to domain inputs and domain results back to protobuf messages.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    domain::{
        Error, Result, Timestamp, limits, passkey,
        session::{
            ChallengeRequest, Checks, Details, Factors, ListSessions, OtpRequest, PasskeyChallengeRequest,
            ReturnedCodes, Session, SessionQuery, TimeComparison, UserAgent, UserCheck,
        },
    },
    proto::{
        session as pb,
        zitadel::{object::v2 as object, v1::TimestampQueryMethod},
    },
};

/// A stored time as a protobuf `Timestamp`, held to the span RFC 3339 can write: a time stored
/// before the bounds held (an expiration in the year 12000, say) shows as the nearest writable
/// one, so that the session still renders on every protocol.
pub fn timestamp(t: Timestamp) -> crate::proto::Timestamp {
    let micros = t.clamp(limits::EARLIEST_RENDERABLE, limits::LATEST_RENDERABLE).micros();
    crate::proto::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn from_timestamp(field: &str, t: Option<crate::proto::Timestamp>) -> Result<Timestamp> {
    let t = t.ok_or_else(|| Error::invalid_argument("REQUEST-MissingField", format!("{field} is required")))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid_argument("REQUEST-InvalidTimestamp", format!("{field} has invalid nanos")));
    }
    let micros = t.seconds.checked_mul(1_000_000).and_then(|s| s.checked_add(i64::from(t.nanos / 1000)));
    micros
        .map(Timestamp)
        .ok_or_else(|| Error::invalid_argument("REQUEST-InvalidTimestamp", format!("{field} is out of range")))
}

pub fn details(d: &Details) -> object::Details {
    object::Details {
        sequence: d.sequence,
        change_date: Some(timestamp(d.change_date)),
        resource_owner: d.resource_owner.clone(),
        creation_date: Some(timestamp(d.creation_date)),
    }
}

/// `lifetime`: non-positive or malformed durations are the caller's mistake.
pub fn lifetime(d: Option<pbjson_types::Duration>) -> Result<Option<Duration>> {
    let Some(d) = d else { return Ok(None) };
    let invalid = || Error::invalid_argument("SESSION-InvalidLifetime", "lifetime must be positive");
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 || (d.seconds == 0 && d.nanos == 0) {
        return Err(invalid());
    }
    Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32)))
}

/// The checks of a request; a check that is not built is refused by name, never ignored.
pub fn checks(c: Option<pb::Checks>) -> Result<Checks> {
    let Some(c) = c else {
        return Ok(Checks::default());
    };
    let unbuilt = [("idpIntent", c.idp_intent.is_some()), ("recoveryCode", c.recovery_code.is_some())];
    if let Some((name, _)) = unbuilt.iter().find(|(_, present)| *present) {
        return Err(Error::unimplemented(
            "CHECK-Unimplemented",
            format!("the {name} check is not supported by this server"),
        ));
    }
    let user = match c.user.map(|u| u.search) {
        Some(Some(pb::check_user::Search::UserId(id))) if !id.is_empty() => Some(UserCheck::ById(id)),
        Some(Some(pb::check_user::Search::LoginName(name))) if !name.is_empty() => Some(UserCheck::ByLoginName(name)),
        // A user check naming nobody (`"user": {}` included) is refused, never dropped.
        Some(_) => {
            return Err(Error::invalid_argument(
                "SESSION-InvalidUserCheck",
                "the user check needs a user id or login name",
            ));
        }
        None => None,
    };
    // An empty password or code is a malformed check, not a wrong one: it never counts as a
    // failed attempt.
    let password = match c.password {
        Some(p) if p.password.is_empty() => {
            return Err(Error::invalid_argument("SESSION-InvalidCheck", "the password check needs a password"));
        }
        p => p.map(|p| p.password),
    };
    let code = |name: &str, code: Option<String>| match code {
        Some(code) if code.is_empty() => {
            Err(Error::invalid_argument("SESSION-InvalidCheck", format!("the {name} check needs a code")))
        }
        code => Ok(code),
    };
    let web_auth_n = match c.web_auth_n.map(|w| w.credential_assertion_data) {
        Some(Some(data)) => Some(struct_json(data)?),
        Some(None) => {
            return Err(Error::invalid_argument(
                "SESSION-InvalidCheck",
                "the webAuthN check needs credentialAssertionData (the browser's PublicKeyCredential)",
            ));
        }
        None => None,
    };
    Ok(Checks {
        user,
        password,
        web_auth_n,
        totp: code("totp", c.totp.map(|t| t.code))?,
        otp_sms: code("otpSms", c.otp_sms.map(|t| t.code))?,
        otp_email: code("otpEmail", c.otp_email.map(|t| t.code))?,
    })
}

/// The challenges a request asks for.
pub fn challenges(c: Option<pb::RequestChallenges>) -> Result<ChallengeRequest> {
    use pb::request_challenges::otp_email::DeliveryType;
    let Some(c) = c else { return Ok(ChallengeRequest::default()) };
    Ok(ChallengeRequest {
        // The user verification requirement is read and not needed: passkeys always verify.
        web_auth_n: c
            .web_auth_n
            .map(|w| {
                passkey::check_domain(&w.domain, "challenges.webAuthN.domain", "SESSION-InvalidChallenge")?;
                Ok::<_, Error>(PasskeyChallengeRequest { domain: w.domain })
            })
            .transpose()?,
        otp_sms: c.otp_sms.map(|sms| OtpRequest { return_code: sms.return_code, url_template: None }),
        // No delivery type means "send it", as ZITADEL reads it.
        otp_email: c.otp_email.map(|email| match email.delivery_type {
            Some(DeliveryType::ReturnCode(_)) => OtpRequest { return_code: true, url_template: None },
            Some(DeliveryType::SendCode(send)) => OtpRequest { return_code: false, url_template: send.url_template },
            None => OtpRequest { return_code: false, url_template: None },
        }),
    })
}

/// The challenges part of a Create or Set answer: the codes the caller asked to get back.
pub fn returned_challenges(codes: ReturnedCodes) -> Result<Option<pb::Challenges>> {
    let ReturnedCodes { otp_sms, otp_email, web_auth_n } = codes;
    let web_auth_n = web_auth_n
        .map(|options| {
            Ok::<_, Error>(pb::challenges::WebAuthN {
                public_key_credential_request_options: Some(json_struct(options)?),
            })
        })
        .transpose()?;
    Ok((otp_sms.is_some() || otp_email.is_some() || web_auth_n.is_some()).then(|| pb::Challenges {
        web_auth_n,
        otp_sms: otp_sms.map(|c| c.expose().to_owned()),
        otp_email: otp_email.map(|c| c.expose().to_owned()),
    }))
}

/// A `google.protobuf.Struct` as the JSON object it stands for. Struct numbers are doubles;
/// whole ones become integers again, as the browser wrote them.
pub fn struct_json(s: pbjson_types::Struct) -> Result<serde_json::Value> {
    fn integral(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => Value::Number(n),
            },
            Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect()),
            other => other,
        }
    }
    serde_json::to_value(s).map(integral).map_err(Error::internal)
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn json_struct(v: serde_json::Value) -> Result<pbjson_types::Struct> {
    serde_json::from_value(v).map_err(Error::internal)
}

pub fn metadata(m: std::collections::HashMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    m.into_iter().collect()
}

pub fn user_agent(u: Option<pb::UserAgent>) -> UserAgent {
    let Some(u) = u else {
        return UserAgent::default();
    };
    UserAgent {
        fingerprint_id: u.fingerprint_id,
        ip: u.ip,
        description: u.description,
        header: u.header.into_iter().map(|(k, v)| (k, v.values)).collect(),
    }
}

fn user_agent_out(u: &UserAgent) -> Option<pb::UserAgent> {
    if *u == UserAgent::default() {
        return None;
    }
    Some(pb::UserAgent {
        fingerprint_id: u.fingerprint_id.clone(),
        ip: u.ip.clone(),
        description: u.description.clone(),
        header: u.header.iter().map(|(k, v)| (k.clone(), pb::user_agent::HeaderValues { values: v.clone() })).collect(),
    })
}

fn factors(f: &Factors) -> pb::Factors {
    pb::Factors {
        user: f.user.as_ref().map(|u| pb::UserFactor {
            verified_at: Some(timestamp(u.verified_at)),
            id: u.id.clone(),
            login_name: u.login_name.clone(),
            display_name: u.display_name.clone(),
            organization_id: u.org_id.clone(),
        }),
        password: f.password.map(|t| pb::PasswordFactor { verified_at: Some(timestamp(t)) }),
        totp: f.totp.map(|t| pb::TotpFactor { verified_at: Some(timestamp(t)) }),
        otp_sms: f.otp_sms.map(|t| pb::OtpFactor { verified_at: Some(timestamp(t)) }),
        otp_email: f.otp_email.map(|t| pb::OtpFactor { verified_at: Some(timestamp(t)) }),
        web_auth_n: f.web_auth_n.map(|w| pb::WebAuthNFactor {
            verified_at: Some(timestamp(w.verified_at)),
            user_verified: w.user_verified,
        }),
        ..Default::default()
    }
}

pub fn session(s: &Session) -> pb::Session {
    pb::Session {
        id: s.id.clone(),
        creation_date: Some(timestamp(s.creation_date)),
        change_date: Some(timestamp(s.change_date)),
        sequence: s.sequence,
        factors: Some(factors(&s.factors)),
        metadata: s.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        user_agent: user_agent_out(&s.user_agent),
        expiration_date: s.expiration_date.map(timestamp),
    }
}

fn comparison(method: i32) -> Result<TimeComparison> {
    match TimestampQueryMethod::try_from(method) {
        Ok(TimestampQueryMethod::Equals) => Ok(TimeComparison::Equals),
        Ok(TimestampQueryMethod::Greater) => Ok(TimeComparison::Greater),
        Ok(TimestampQueryMethod::GreaterOrEquals) => Ok(TimeComparison::GreaterOrEquals),
        Ok(TimestampQueryMethod::Less) => Ok(TimeComparison::Less),
        Ok(TimestampQueryMethod::LessOrEquals) => Ok(TimeComparison::LessOrEquals),
        Err(_) => {
            Err(Error::invalid_argument("SESSION-InvalidQuery", format!("unknown timestamp query method {method}")))
        }
    }
}

pub fn list_request(r: pb::ListSessionsRequest, caller_user_id: &str) -> Result<ListSessions> {
    use pb::search_query::Query;
    let query = r.query.unwrap_or_default();
    let queries = r
        .queries
        .into_iter()
        .map(|q| match q.query {
            Some(Query::IdsQuery(q)) => Ok(SessionQuery::Ids(q.ids)),
            Some(Query::UserIdQuery(q)) => Ok(SessionQuery::UserId(q.id)),
            Some(Query::CreationDateQuery(q)) => Ok(SessionQuery::CreationDate(
                comparison(q.method)?,
                from_timestamp("creation_date_query.creation_date", q.creation_date)?,
            )),
            Some(Query::ExpirationDateQuery(q)) => Ok(SessionQuery::ExpirationDate(
                comparison(q.method)?,
                from_timestamp("expiration_date_query.expiration_date", q.expiration_date)?,
            )),
            // Without an id, the creator query means "sessions I created" (ZITADEL's rule).
            Some(Query::CreatorQuery(q)) => {
                Ok(SessionQuery::Creator(q.id.unwrap_or_else(|| caller_user_id.to_owned())))
            }
            Some(Query::UserAgentQuery(q)) => match q.fingerprint_id {
                Some(id) => Ok(SessionQuery::UserAgentFingerprint(id)),
                // ZITADEL would take the caller's agent from HTTP headers; sessiond never does.
                None => {
                    Err(Error::invalid_argument("SESSION-InvalidQuery", "user_agent_query.fingerprint_id is required"))
                }
            },
            None => Err(Error::invalid_argument("SESSION-InvalidQuery", "a search query must set one query")),
        })
        .collect::<Result<_>>()?;
    Ok(ListSessions { queries, offset: query.offset, limit: query.limit, ascending: query.asc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_stay_within_what_rfc_3339_can_write() {
        let latest = crate::proto::Timestamp { seconds: 253_402_300_799, nanos: 999_999_000 };
        let earliest = crate::proto::Timestamp { seconds: -62_135_596_800, nanos: 0 };
        assert_eq!(timestamp(Timestamp(i64::MAX)), latest);
        assert_eq!(timestamp(limits::LATEST_RENDERABLE), latest);
        assert_eq!(timestamp(Timestamp(i64::MIN)), earliest);
        assert_eq!(timestamp(Timestamp(1_500_000)), crate::proto::Timestamp { seconds: 1, nanos: 500_000_000 });
        // The JSON serializer writes the extremes (it refuses anything past them).
        for t in [latest, earliest] {
            let json = serde_json::to_string(&t).expect("renderable");
            assert!(json.starts_with("\"9999-12-31T23:59:59.999999") || json.starts_with("\"0001-01-01"), "{json}");
        }
    }
}
