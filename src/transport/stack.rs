//! The one place the front door is composed, outer to inner, each concern its own layer.

use std::{sync::Arc, time::Duration};

use http::{Request, header::AUTHORIZATION};
use tonic::{body::Body, server::NamedService};
use tower::{Layer, ServiceBuilder};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use super::{
    Inner, Next, Protocol, access_log, answers, auth, classify, classify::Target, cors, grpc, grpc_web, limits,
    openapi, probes, request_id, routes::Routes, transcode,
};
use crate::metrics::CallMetrics;

/// Settings of the front door.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Calls served at once (an adaptive limit); beyond it calls are shed with RESOURCE_EXHAUSTED.
    pub admission: limits::Admission,
    /// How long a request body may take to arrive (a trickled body must not hold a slot forever).
    pub body_read_timeout: Duration,
    /// Allowed CORS origins; empty allows every origin.
    pub cors_origins: Vec<String>,
    /// Whether a call's credential lets it wait for its body (the service's lookup).
    pub gate: crate::service::auth::Gate,
    /// Where each call is counted and timed (none: metrics are off).
    pub metrics: Option<Arc<CallMetrics>>,
    /// What `/readyz` asks.
    pub readiness: probes::Readiness,
}

/// The services called by their path prefix (`/<package.Service>/`) without tonic's router: the
/// generated servers of the APIs, which every call reaches (the router's path match, its body
/// conversions and its boxed route are skipped for them).
#[derive(Debug, Clone, Default)]
pub struct Direct(Vec<(String, Inner)>);

impl Direct {
    /// `service` serves every path under its name.
    pub fn with<S: Next + NamedService>(mut self, service: S) -> Self {
        self.0.push((format!("/{}/", S::NAME), Inner::new(service)));
        self
    }

    /// The service whose prefix `path` has.
    fn find(&self, path: &str) -> Option<&Inner> {
        self.0.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())).map(|(_, service)| service)
    }
}

/// The service on the port, around `direct` (the APIs' generated servers) and `routes` (tonic's
/// routes for the rest: health and reflection).
pub fn front_door(direct: Direct, routes: tonic::service::Routes, settings: &Settings) -> anyhow::Result<Inner> {
    let routes = Inner::new(routes.prepare());
    let served = Inner::from_fn(move |request: Request<Body>| match direct.find(request.uri().path()) {
        Some(service) => service.call_now(request),
        None => routes.call_now(request),
    });
    // Every protocol ends here, with tonic's own errors given their detail.
    let core = Inner::new(grpc::details().layer(served));
    let native = grpc::unary_framing().layer(core.clone());
    let web = grpc_web::service(native.clone());
    let body_limit = settings.body_limit;
    // Hands the call to its protocol's path (its future as it is).
    let dispatch =
        Inner::from_fn(move |request: Request<Body>| match request.extensions().get::<Target>().map(|t| t.protocol) {
            Some(Protocol::Grpc) => native.call_now(request),
            Some(Protocol::GrpcWeb { .. }) => web.call_now(request),
            Some(Protocol::Connect { .. } | Protocol::Rest) | None => {
                Box::pin(transcode::serve(request, core.clone(), body_limit))
            }
        });
    // One route table for routing REST and for describing it.
    let rest_routes = Arc::new(Routes::from_pool(crate::proto::pool())?);
    let openapi = openapi::layer(&rest_routes)?;
    // Boxed once, here: every layer inside is a concrete service over the next.
    Ok(Inner::new(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
            .layer(request_id::RequestIdLayer)
            .layer(probes::ProbesLayer::new(settings.readiness.clone()))
            // CORS in front of the limit, so that a browser can read its refusal; the limit in
            // front of the access log, whose span would cost a refusal more than the refusal.
            .layer(cors::layer(&settings.cors_origins)?)
            .layer(limits::shed(settings.admission, settings.metrics.clone()))
            .layer(access_log::AccessLogLayer::new(settings.metrics.clone()))
            .layer(openapi)
            .layer(classify::layer(rest_routes))
            .layer(limits::body_guard(settings.body_limit, settings.body_read_timeout))
            .layer(limits::deadline())
            .layer(auth::layer(settings.gate.clone()))
            // A large answer's share of the budget goes with its body (`answers`).
            .map_response(answers::tie)
            .service(dispatch),
    ))
}
