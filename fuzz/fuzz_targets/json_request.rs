//! Proto3 JSON request bodies (REST and Connect) decoded into each request message the server
//! takes; the first byte picks the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::transport::json;

const MESSAGES: [&str; 6] = [
    "zitadel.session.v2.CreateSessionRequest",
    "zitadel.session.v2.SetSessionRequest",
    "zitadel.session.v2.ListSessionsRequest",
    "zitadel.session.v2.GetSessionRequest",
    "zitadel.session.v2.DeleteSessionRequest",
    "grpc.health.v1.HealthCheckRequest",
];

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else { return };
    let name = MESSAGES[usize::from(*pick) % MESSAGES.len()];
    let desc = sessiond::proto::pool().get_message_by_name(name).expect("a known message");
    let _ = json::connect_request(&desc, body);
});
