//! Generates the protobuf types, the tonic server and client, proto3-JSON serde impls and the
//! descriptor set from `proto/`, with protox so that no system `protoc` is needed.

use std::{env, fs, path::PathBuf};

/// The proto files we own; the Google well-known types come from protox itself.
const PROTOS: &[&str] = &[
    "zitadel/session/v2/session_service.proto",
    "zitadel/session/v2/session.proto",
    "zitadel/session/v2/challenge.proto",
    "zitadel/user/v2/user_service.proto",
    "zitadel/user/v2/auth.proto",
    "zitadel/object/v2/object.proto",
    "zitadel/object.proto",
    "zitadel/message.proto",
    "zitadel/protoc_gen_zitadel/v2/options.proto",
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/rpc/status.proto",
];

/// Messages with a secret field; `src/proto.rs` implements their `Debug` (keep the lists equal).
const SECRET_BEARING: &[&str] = &[
    "GetSessionRequest",
    "CreateSessionResponse",
    "SetSessionRequest",
    "SetSessionResponse",
    "DeleteSessionRequest",
    "CheckPassword",
    "CheckTOTP",
    "CheckOTP",
    "CheckRecoveryCode",
    "CheckIDPIntent",
    "Challenges",
];

/// The same for the user service's messages.
const USER_SECRET_BEARING: &[&str] = &["PasskeyRegistrationCode"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 emits no rerun-if-changed lines for protox input: name each file.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true).open_files(PROTOS)?;
    // Encoded by protox itself: prost_types would drop the extension options (google.api.http)
    // that the REST layer reads.
    let descriptor_bytes = compiler.encode_file_descriptor_set();
    let fds = compiler.file_descriptor_set();
    fs::write(out_dir.join("sessiond_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Well-known types come from pbjson-types, which carry their proto3 JSON mapping.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // ... except Timestamp, whose JSON text must end in `Z` (pbjson-types writes `+00:00`).
        .extern_path(".google.protobuf.Timestamp", "crate::proto::Timestamp")
        // Our codec turns undecodable request bytes into INVALID_ARGUMENT with an ErrorDetail.
        .codec_path("crate::service::codec::ProtoCodec")
        // Messages that carry secrets (session tokens, passwords, one-time codes) get a `Debug`
        // that redacts them, written in `src/proto.rs`.
        .skip_debug(
            SECRET_BEARING
                .iter()
                .map(|m| format!(".zitadel.session.v2.{m}"))
                .chain(USER_SECRET_BEARING.iter().map(|m| format!(".zitadel.user.v2.{m}"))),
        )
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .extern_path(".google.protobuf.Timestamp", "crate::proto::Timestamp")
        .build(&[".zitadel"])?;
    Ok(())
}
