//! The per-call metrics, on the hot path: each (rpc, protocol, code) resolves its counter and
//! histogram once, through a family, into a slot of a fixed table; after that a call costs a few
//! atomic operations and the histogram's short lock, with no allocation and no hashing.

use std::sync::{Arc, LazyLock, OnceLock};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use tonic::Code;

use super::latency_histogram;
use crate::transport::Protocol;

/// The RPCs the label `rpc` may name: every method of the descriptors' services, health and
/// reflection; everything else is `unknown` (index 0).
static RPCS: LazyLock<Box<[(&'static str, &'static str)]>> = LazyLock::new(|| {
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut rpcs = vec![("", "unknown")];
    for service in crate::proto::pool().services() {
        let name = leak(service.full_name());
        rpcs.extend(service.methods().map(|m| (name, leak(m.name()))));
    }
    rpcs.extend([
        ("grpc.health.v1.Health", "Check"),
        ("grpc.health.v1.Health", "Watch"),
        ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"),
        ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo"),
    ]);
    rpcs.into_boxed_slice()
});

/// An RPC as the `rpc` label names it: an index into the fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rpc(u16);

impl Rpc {
    pub const UNKNOWN: Self = Self(0);

    /// The RPC `service`/`method` names, or `UNKNOWN`.
    pub fn of(service: &str, method: &str) -> Self {
        RPCS.iter()
            .skip(1)
            .position(|(s, m)| *m == method && *s == service)
            .map_or(Self::UNKNOWN, |i| Self(u16::try_from(i + 1).unwrap_or(0)))
    }

    /// The label: the method's name (`GetSession`), or `Service/Method` outside the Session API.
    fn label(self) -> &'static str {
        let (service, method) = RPCS[usize::from(self.0)];
        if service.is_empty() || service.starts_with("zitadel.") {
            method
        } else {
            static QUALIFIED: LazyLock<Box<[&'static str]>> =
                LazyLock::new(|| RPCS.iter().map(|(s, m)| &*Box::leak(format!("{s}/{m}").into_boxed_str())).collect());
            QUALIFIED[usize::from(self.0)]
        }
    }
}

const PROTOCOLS: usize = 6;
/// gRPC's 17 codes, and `unknown` for a call that ended without one (its body was dropped).
const CODES: usize = 18;
const CODE_NAMES: [&str; CODES] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
    "none",
];

fn protocol_index(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Grpc => 0,
        Protocol::GrpcWeb { text: false } => 1,
        Protocol::GrpcWeb { text: true } => 2,
        Protocol::Connect { json: true } => 3,
        Protocol::Connect { json: false } => 4,
        Protocol::Rest => 5,
    }
}

fn code_index(code: Option<Code>) -> usize {
    code.map_or(CODES - 1, |c| (c as usize).min(CODES - 2))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    rpc: &'static str,
    protocol: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    rpc: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

/// Calls by RPC, protocol and code, their latency, the calls shed and those in flight.
#[derive(Debug)]
pub struct CallMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    shed: Family<ProtocolLabels, Counter>,
    in_flight: Gauge,
    admission_limit: Gauge,
    /// Resolved handles, by (rpc, protocol, code) and (rpc, protocol): a series appears in the
    /// output with its first call.
    call_slots: Box<[OnceLock<Counter>]>,
    duration_slots: Box<[OnceLock<Histogram>]>,
}

impl CallMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let calls = Family::default();
        registry.register("calls", "Calls answered, by RPC, protocol and gRPC code", calls.clone());
        let durations = Family::<_, _, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register_with_unit(
            "call_duration",
            "Time from a call's request head to the end of its response, by RPC and protocol",
            Unit::Seconds,
            durations.clone(),
        );
        let shed = Family::default();
        registry.register(
            "calls_shed",
            "Calls refused at once with RESOURCE_EXHAUSTED because the in-flight limit was reached",
            shed.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("calls_in_flight", "Calls received and not yet answered in full", in_flight.clone());
        let admission_limit = Gauge::default();
        registry.register(
            "calls_admission_limit",
            "Calls the adaptive in-flight limit admits at once now; the next one is shed",
            admission_limit.clone(),
        );
        let routes = RPCS.len() * PROTOCOLS;
        Self {
            calls,
            durations,
            shed,
            in_flight,
            admission_limit,
            call_slots: (0..routes * CODES).map(|_| OnceLock::new()).collect(),
            duration_slots: (0..routes).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A call arrived: it counts as in flight until the handle drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(Arc::clone(self))
    }

    /// Where the adaptive in-flight limit stands, set by the limit as it moves.
    pub fn admission_limit(&self) -> Gauge {
        self.admission_limit.clone()
    }

    /// A call was refused at once by the in-flight limit (it was never in flight, nor timed).
    pub fn shed(&self, protocol: Protocol) {
        self.count(Rpc::UNKNOWN, protocol, Some(Code::ResourceExhausted));
        self.shed.get_or_create(&ProtocolLabels { protocol: protocol.name() }).inc();
    }

    fn count(&self, rpc: Rpc, protocol: Protocol, code: Option<Code>) {
        let route = usize::from(rpc.0) * PROTOCOLS + protocol_index(protocol);
        let code = code_index(code);
        self.call_slots[route * CODES + code]
            .get_or_init(|| {
                self.calls.get_or_create_owned(&CallLabels {
                    rpc: rpc.label(),
                    protocol: protocol.name(),
                    code: CODE_NAMES[code],
                })
            })
            .inc();
    }

    fn finished(&self, rpc: Rpc, protocol: Protocol, code: Option<Code>, seconds: f64) {
        self.count(rpc, protocol, code);
        let route = usize::from(rpc.0) * PROTOCOLS + protocol_index(protocol);
        self.duration_slots[route]
            .get_or_init(|| {
                self.durations.get_or_create_owned(&RouteLabels { rpc: rpc.label(), protocol: protocol.name() })
            })
            .observe(seconds);
    }
}

/// A call in flight, from its request head to the end of its response (or until it is dropped).
#[derive(Debug)]
pub struct InFlight(Arc<CallMetrics>);

impl InFlight {
    /// The call ended (its response sent or dropped) with `code`, after `seconds`.
    pub fn finished(&self, rpc: Rpc, protocol: Protocol, code: Option<Code>, seconds: f64) {
        self.0.finished(rpc, protocol, code, seconds);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_are_named_from_the_fixed_list_only() {
        let get = Rpc::of("zitadel.session.v2.SessionService", "GetSession");
        assert_eq!(get.label(), "GetSession");
        assert_eq!(Rpc::of("grpc.health.v1.Health", "Check").label(), "grpc.health.v1.Health/Check");
        assert_eq!(Rpc::of("zitadel.session.v2.SessionService", "Nope"), Rpc::UNKNOWN);
        assert_eq!(Rpc::of("", "unknown"), Rpc::UNKNOWN, "the placeholder is not an RPC a caller can name");
        assert_eq!(Rpc::UNKNOWN.label(), "unknown");
    }

    #[test]
    fn every_code_has_a_name() {
        assert_eq!(CODE_NAMES[code_index(Some(Code::Unauthenticated))], "UNAUTHENTICATED");
        assert_eq!(CODE_NAMES[code_index(Some(Code::Ok))], "OK");
        assert_eq!(CODE_NAMES[code_index(None)], "none");
    }
}
