//! The JSON layer's own checks: typed and reflective answers agree, refusals name the field.

use prost_reflect::DescriptorPool;

use super::*;

fn input(name: &str) -> MessageDescriptor {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap().get_message_by_name(name).unwrap()
}

/// The reflective serialiser, for comparison with the typed one.
fn reflective(name: &str, proto: &[u8]) -> Json {
    let message = DynamicMessage::decode(input(name), proto).unwrap();
    let mut out = Vec::new();
    message.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &SERIALIZE).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn typed(name: &str, proto: &[u8]) -> Json {
    serde_json::from_slice(&typed_response_json(name, proto).expect("a typed serialiser").unwrap()).unwrap()
}

#[test]
fn typed_answers_are_the_reflective_json() {
    use crate::proto::{session as pb, zitadel::object::v2 as object};
    let at = |seconds: i64, nanos: i32| Some(crate::proto::Timestamp { seconds, nanos });
    let session = |id: &str, nanos: i32| pb::Session {
        id: id.into(),
        creation_date: at(1_700_000_000, nanos),
        change_date: at(1_700_000_001, 0),
        sequence: u64::MAX,
        factors: Some(pb::Factors {
            user: Some(pb::UserFactor {
                verified_at: at(1_700_000_000, 120_000_000),
                id: "u1".into(),
                login_name: "alice".into(),
                display_name: "Alice \"Ä\" <a>".into(),
                organization_id: "org".into(),
            }),
            password: Some(pb::PasswordFactor { verified_at: at(0, 1_000) }),
            ..Default::default()
        }),
        metadata: [("k".into(), vec![0, 159, 146, 150]), ("empty".into(), vec![])].into(),
        user_agent: Some(pb::UserAgent {
            fingerprint_id: Some("fp".into()),
            ip: None,
            description: Some(String::new()),
            header: [("accept".into(), pb::user_agent::HeaderValues { values: vec!["a".into(), "".into()] })].into(),
        }),
        expiration_date: at(253_402_300_799, 999_999_999),
    };
    let details = Some(object::Details {
        sequence: 7,
        change_date: at(1_700_000_002, 500_000),
        resource_owner: "org".into(),
        creation_date: at(1_700_000_000, 0),
    });
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "zitadel.session.v2.GetSessionResponse",
            pb::GetSessionResponse { session: Some(session("s1", 123_456_789)) }.encode_to_vec(),
        ),
        ("zitadel.session.v2.GetSessionResponse", pb::GetSessionResponse { session: None }.encode_to_vec()),
        (
            "zitadel.session.v2.ListSessionsResponse",
            pb::ListSessionsResponse {
                details: Some(object::ListDetails {
                    total_result: 2,
                    processed_sequence: 0,
                    timestamp: at(1_700_000_003, 1),
                }),
                sessions: vec![session("a", 0), session("b", 5_000_000)],
            }
            .encode_to_vec(),
        ),
        (
            "zitadel.session.v2.CreateSessionResponse",
            pb::CreateSessionResponse {
                details: details.clone(),
                session_id: "s1".into(),
                session_token: "t0k3n".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "zitadel.session.v2.SetSessionResponse",
            pb::SetSessionResponse { details: details.clone(), session_token: String::new(), ..Default::default() }
                .encode_to_vec(),
        ),
        ("zitadel.session.v2.DeleteSessionResponse", pb::DeleteSessionResponse { details }.encode_to_vec()),
    ];
    for (name, proto) in cases {
        assert_eq!(typed(name, &proto), reflective(name, &proto), "{name}");
    }
    assert!(typed_response_json("grpc.health.v1.HealthCheckResponse", &[]).is_none());
}

mod props {
    use proptest::prelude::*;

    use super::{Message as _, reflective, typed};
    use crate::proto::{Timestamp, session as pb};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any GetSession answer, over the whole timestamp range and with any text: the typed
        /// and the reflective serialisers write the same JSON.
        #[test]
        fn typed_and_reflective_json_agree(
            seconds in -62_135_596_800i64..=253_402_300_799,
            nanos in prop_oneof![0i32..1_000_000_000, Just(0), (0i32..1000).prop_map(|m| m * 1_000_000)],
            id in "\\PC{0,24}",
            sequence in any::<u64>(),
            key in "[a-z]{1,8}",
            value in proptest::collection::vec(any::<u8>(), 0..24),
            header in "\\PC{0,16}",
        ) {
            let at = Some(Timestamp { seconds, nanos });
            let answer = pb::GetSessionResponse {
                session: Some(pb::Session {
                    id: id.clone(),
                    creation_date: at,
                    change_date: at,
                    sequence,
                    factors: Some(pb::Factors {
                        user: Some(pb::UserFactor { verified_at: at, display_name: id, ..Default::default() }),
                        ..Default::default()
                    }),
                    metadata: [(key.clone(), value)].into(),
                    user_agent: Some(pb::UserAgent {
                        header: [(key, pb::user_agent::HeaderValues { values: vec![header] })].into(),
                        ..Default::default()
                    }),
                    expiration_date: at,
                }),
            }
            .encode_to_vec();
            let name = "zitadel.session.v2.GetSessionResponse";
            prop_assert_eq!(typed(name, &answer), reflective(name, &answer));
        }
    }
}

#[test]
fn a_response_that_cannot_be_rendered_is_a_generic_internal_error() {
    // The typed path (a session answer) and the reflective one (anything else).
    for name in ["zitadel.session.v2.GetSessionResponse", "zitadel.v1.ErrorDetail"] {
        let status = response_json(&input(name), &[0xff, 0xff, 0xff], "").unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal, "{name}");
        assert_eq!(status.message(), "internal error (INTERNAL)", "{name}: the cause stays in the log");
    }
}

fn refusal(name: &str, body: &str) -> String {
    decode_body(&input(name), body.as_bytes()).unwrap_err().message().to_owned()
}

#[test]
fn undefined_enum_numbers_are_refused_naming_the_field() {
    let list = "zitadel.session.v2.ListSessionsRequest";
    assert!(refusal(list, r#"{"sortingColumn": 7}"#).contains("field `sortingColumn`: 7 is not a value"));
    let nested = r#"{"queries": [{"creationDateQuery": {"method": 9}}]}"#;
    assert!(refusal(list, nested).contains("queries.creationDateQuery.method"));
    assert!(decode_body(&input(list), br#"{"sortingColumn": 1}"#).is_ok());
    assert!(decode_body(&input(list), br#"{"sortingColumn": "SESSION_FIELD_NAME_CREATION_DATE"}"#).is_ok());
}

#[test]
fn at_most_nine_fractional_digits() {
    let create = "zitadel.session.v2.CreateSessionRequest";
    assert!(refusal(create, r#"{"lifetime": "1.1234567891s"}"#).contains("at most 9 fractional digits"));
    assert!(decode_body(&input(create), br#"{"lifetime": "1.123456789s"}"#).is_ok());
    let list = "zitadel.session.v2.ListSessionsRequest";
    let ts = r#"{"queries": [{"creationDateQuery": {"creationDate": "2020-01-01T00:00:00.1234567891Z"}}]}"#;
    assert!(refusal(list, ts).contains("at most 9 fractional digits"));
}

#[test]
fn bodies_must_be_one_json_object() {
    let delete = "zitadel.session.v2.DeleteSessionRequest";
    for body in ["[1]", "\"x\"", "null", "{\"sessionToken\": \"a\"} x", "{\"sessionToken\": "] {
        assert!(decode_body(&input(delete), body.as_bytes()).is_err(), "{body}");
    }
    assert!(decode_body(&input(delete), b"  \n").is_ok());
    assert!(refusal(delete, r#"{"sesionToken": "x"}"#).contains("sesionToken"));
    assert!(refusal(delete, r#"{"sessionToken": "a", "sessionToken": "b"}"#).contains("given twice"));
}

#[test]
fn a_field_given_by_both_its_names_is_refused_unless_one_is_null() {
    let set = "zitadel.session.v2.SetSessionRequest";
    for body in [
        r#"{"sessionId": "s", "sessionToken": "WRONG", "session_token": ""}"#,
        r#"{"session_token": "a", "sessionToken": "b"}"#,
        r#"{"sessionId": "a", "session_id": "b"}"#,
        r#"{"checks": {"user": {"userId": "a", "user_id": "b"}}}"#,
    ] {
        let refused = refusal(set, body);
        assert!(refused.contains("given twice, by its JSON and its proto name"), "{body}: {refused}");
    }
    // `null` is the default: the other name's value stands, in either order.
    for body in [r#"{"sessionToken": "t", "session_token": null}"#, r#"{"session_token": null, "sessionToken": "t"}"#] {
        let message = decode_body(&input(set), body.as_bytes()).unwrap();
        let token = message.get_field_by_name("session_token").unwrap();
        assert_eq!(token.as_str(), Some("t"), "{body}");
    }
}

/// What the reflective path makes of a Connect body: the message's bytes, or a refusal.
fn reflective_request(name: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    decode_body(&input(name), body).map(|m| m.encode_to_vec()).map_err(|s| s.message().to_owned())
}

/// The typed fast path never accepts what the reflective path refuses, and means the same by
/// what it accepts; what it leaves to the reflective path is answered as before.
fn assert_same_request(name: &str, body: &str) {
    let reflective = reflective_request(name, body.as_bytes());
    if let Some(fast) = typed_request(name, body.as_bytes()) {
        assert_eq!(Ok(fast.to_vec()), reflective, "{name}: {body}");
    }
    let served = connect_request(&input(name), body.as_bytes()).map(|b| b.to_vec()).map_err(|s| s.message().to_owned());
    assert_eq!(served, reflective, "{name}: {body}");
}

const TYPED_REQUESTS: [&str; 2] = ["zitadel.session.v2.GetSessionRequest", "zitadel.session.v2.DeleteSessionRequest"];

#[test]
fn typed_requests_mean_what_the_reflective_path_means() {
    let bodies = [
        r#"{"sessionId": "s1", "sessionToken": "t"}"#,
        r#"{"session_id": "s1", "session_token": ""}"#,
        r#"{"sessionToken": null}"#,
        r#"{"sessionId": null}"#,
        r#"{"sessionId": "a", "session_id": "b"}"#,
        r#"{"sessionId": "a", "sessionId": "b"}"#,
        r#"{"sessionId": 5}"#,
        r#"{"sesionId": "x"}"#,
        r#"{"session\u0049d": "escaped key"}"#,
        r#"{"sessionId": "\ud83d\ude00 \u0000"}"#,
        r#"["s1"]"#,
        r#"{"sessionId": "x"} trailing"#,
        "",
        "  \n",
        "{}",
        "null",
    ];
    for name in TYPED_REQUESTS {
        for body in bodies {
            assert_same_request(name, body);
        }
    }
}

#[test]
fn rest_calls_of_the_common_shape_are_the_general_paths_bytes() {
    let routes = super::super::routes::Routes::from_pool(crate::proto::pool()).unwrap();
    let cases: [(http::Method, &str, &str); 5] = [
        (http::Method::GET, "/v2/sessions/s%2F1", ""),
        (http::Method::DELETE, "/v2/sessions/s1", ""),
        (http::Method::DELETE, "/v2/sessions/s1", r#"{"sessionToken": "t"}"#),
        // The path wins over the body, as on the general path.
        (http::Method::DELETE, "/v2/sessions/s1", r#"{"sessionId": "other", "sessionToken": "t"}"#),
        (http::Method::DELETE, "/v2/sessions/s1", r#"{"session_id": "a", "sessionId": "b"}"#),
    ];
    for (method, path, body) in cases {
        let matched = routes.find(&method, path).unwrap();
        let served = rest_request(&matched.route, &matched.variables, None, body.as_bytes()).map(|b| b.to_vec());
        let input = matched.route.method.input();
        let general =
            general_rest_request(&matched.route, &input, &matched.variables, None, body.as_bytes()).map(|b| b.to_vec());
        match (served, general) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (DynamicMessage::decode(matched.route.method.input(), a.as_slice()).unwrap(), {
                    DynamicMessage::decode(matched.route.method.input(), b.as_slice()).unwrap()
                });
                assert_eq!(a, b, "{method} {path} {body}");
            }
            (Err(a), Err(b)) => assert_eq!(a.message(), b.message(), "{method} {path} {body}"),
            (a, b) => panic!("{method} {path} {body}: {a:?} against {b:?}"),
        }
    }
}

mod typed_requests {
    use proptest::prelude::*;

    use super::{TYPED_REQUESTS, assert_same_request};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Bodies made of the requests' own keys (both spellings), near misses, any values: the
        /// fast path and the reflective one agree on every one.
        #[test]
        fn typed_and_reflective_requests_agree(
            entries in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("sessionId"), Just("session_id"), Just("sessionToken"),
                        Just("session_token"), Just("sessionid"), Just("x"),
                    ],
                    prop_oneof![
                        "\\PC{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
                        Just("null".to_owned()), Just("1".to_owned()), Just("{}".to_owned()),
                        Just("[]".to_owned()), Just("true".to_owned()),
                    ],
                ),
                0..4,
            ),
        ) {
            let body = format!(
                "{{{}}}",
                entries.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ")
            );
            for name in TYPED_REQUESTS {
                assert_same_request(name, &body);
            }
        }
    }
}
