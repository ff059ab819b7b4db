//! Code generated from `proto/` by `build.rs`: message types, the tonic server and client, and
//! proto3-JSON serde impls; plus the encoded descriptor set that reflection and the JSON layer read.

#![allow(
    // generated code documents what the .proto documents, no more
    missing_docs,
    // prost derives Debug on every message; some generated wrappers do not
    missing_debug_implementations,
    // generated modules re-export freely
    unreachable_pub,
    // prost emits large enum variants and doc comments as written in the .proto
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation,
    clippy::doc_overindented_list_items
)]

/// The encoded `FileDescriptorSet` of every file in `proto/`, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sessiond_descriptor.bin"));

/// Every descriptor the server speaks: ours and the health service's, for the JSON transcoding of
/// both and for reflection.
pub fn pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> = std::sync::LazyLock::new(|| {
        let mut pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("our descriptors decode");
        pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET).expect("the health descriptors decode");
        pool
    });
    &POOL
}

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

pub mod zitadel {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/zitadel.v1.serde.rs"));
    }
    pub mod object {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.object.v2.serde.rs"));
        }
    }
    pub mod session {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.session.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.session.v2.serde.rs"));
        }
    }
    pub mod user {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.user.v2.serde.rs"));
        }
    }
    pub mod protoc_gen_zitadel {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.protoc_gen_zitadel.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.protoc_gen_zitadel.v2.serde.rs"));
        }
    }
}

pub use zitadel::{session::v2 as session, user::v2 as user};

/// `google.protobuf.Timestamp`, as every generated message holds it. Its proto3 JSON is RFC 3339
/// in UTC with a `Z` and 0, 3, 6 or 9 fractional digits, as ZITADEL and the reflective JSON path
/// write it; pbjson-types' own Timestamp writes `+00:00`, which some clients refuse.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Fraction of the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .and_then(|nanos| chrono::DateTime::from_timestamp(self.seconds, nanos))
            .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
            .ok_or_else(|| {
                serde::ser::Error::custom(format!(
                    "timestamp {}s {}ns is outside 0001-01-01 to 9999-12-31",
                    self.seconds, self.nanos
                ))
            })?;
        serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let t = pbjson_types::Timestamp::deserialize(deserializer)?;
        Ok(Self { seconds: t.seconds, nanos: t.nanos })
    }
}

/// `Debug` for the generated messages that carry secrets (`build.rs` lists them): every field by
/// name, each secret only as whether it is set, so that a logged request never shows one.
macro_rules! redacted_debug {
    ($($ty:ident { $($field:ident),* ; secret $($secret:ident),+ })*) => {$(
        impl std::fmt::Debug for session::$ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &Redacted::of(&self.$secret)))+
                    .finish()
            }
        }
    )*};
}

redacted_debug! {
    GetSessionRequest { session_id; secret session_token }
    CreateSessionResponse { details, session_id, challenges; secret session_token }
    SetSessionRequest { session_id, checks, metadata, challenges, lifetime; secret session_token }
    SetSessionResponse { details, challenges; secret session_token }
    DeleteSessionRequest { session_id; secret session_token }
    CheckPassword { ; secret password }
    CheckTotp { ; secret code }
    CheckOtp { ; secret code }
    CheckRecoveryCode { ; secret code }
    CheckIdpIntent { idp_intent_id; secret idp_intent_token }
    Challenges { web_auth_n; secret otp_sms, otp_email }
}

// `skip_debug` on `Challenges` also covers its nested message, which holds no secret.
impl std::fmt::Debug for session::challenges::WebAuthN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAuthN")
            .field("public_key_credential_request_options", &self.public_key_credential_request_options)
            .finish()
    }
}

impl std::fmt::Debug for user::PasskeyRegistrationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyRegistrationCode")
            .field("id", &self.id)
            .field("code", &Redacted::of(&self.code))
            .finish()
    }
}

/// A secret as `Debug` shows it: `<redacted>` when set, `""` or `None` when not.
enum Redacted {
    Set,
    Empty,
    Absent,
}

impl Redacted {
    fn of(value: &dyn SecretField) -> Self {
        value.presence()
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Set => "<redacted>",
            Self::Empty => "\"\"",
            Self::Absent => "None",
        })
    }
}

trait SecretField {
    fn presence(&self) -> Redacted;
}

impl SecretField for String {
    fn presence(&self) -> Redacted {
        if self.is_empty() { Redacted::Empty } else { Redacted::Set }
    }
}

impl SecretField for Option<String> {
    fn presence(&self) -> Redacted {
        self.as_ref().map_or(Redacted::Absent, SecretField::presence)
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::session;

    #[test]
    fn messages_with_secrets_never_show_them_in_debug() {
        let request = session::SetSessionRequest {
            session_id: "s1".into(),
            session_token: "token-abc".into(),
            checks: Some(session::Checks {
                password: Some(session::CheckPassword { password: "hunter2".into() }),
                totp: Some(session::CheckTotp { code: "123456".into() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown = format!("{request:?}");
        for secret in ["token-abc", "hunter2", "123456"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("s1") && shown.contains("<redacted>"), "{shown}");
        let response = session::CreateSessionResponse { session_token: "tok".into(), ..Default::default() };
        assert!(!format!("{response:?}").contains("tok\""), "{response:?}");
        let absent = session::DeleteSessionRequest { session_id: "s".into(), session_token: None };
        assert!(format!("{absent:?}").contains("session_token: None"), "{absent:?}");
    }
}
