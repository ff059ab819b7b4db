//! The one place the front door is composed, outer to inner, each concern its own layer.

use std::{sync::Arc, time::Duration};

use http::{Request, header::AUTHORIZATION};
use tonic::body::Body;
use tower::{Layer, ServiceBuilder};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};

use super::{
    Inner, Protocol, access_log, auth, classify, classify::Target, cors, forward, grpc, grpc_web, limits, openapi,
    probes, request_id, routes::Routes, transcode,
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
    /// Where each call is counted and timed (none: metrics are off).
    pub metrics: Option<Arc<CallMetrics>>,
    /// What `/readyz` asks.
    pub readiness: probes::Readiness,
}

/// The service on the port, around `routes`: tonic's routes holding the generated
/// SessionService server, health and reflection.
pub fn front_door(
    routes: tonic::service::Routes,
    settings: &Settings,
) -> anyhow::Result<SetSensitiveRequestHeaders<Inner>> {
    // Every protocol ends here: tonic's routes, with tonic's own errors given their detail.
    let core = grpc::details().layer(Inner::new(routes.prepare()));
    let native = grpc::unary_framing().layer(core.clone());
    let web = grpc_web::service(native.clone());
    let body_limit = settings.body_limit;
    let dispatch = Inner::new(tower::service_fn(move |request: Request<Body>| {
        let (native, web, core) = (native.clone(), web.clone(), core.clone());
        async move {
            let protocol = request.extensions().get::<Target>().map(|t| t.protocol);
            Ok(match protocol {
                Some(Protocol::Grpc) => forward(native, request).await,
                Some(Protocol::GrpcWeb { .. }) => forward(web, request).await,
                Some(Protocol::Connect { .. } | Protocol::Rest) | None => {
                    transcode::serve(request, core, body_limit).await
                }
            })
        }
    }));
    // One route table for routing REST and for describing it.
    let rest_routes = Arc::new(Routes::from_pool(crate::proto::pool())?);
    let openapi = openapi::layer(&rest_routes)?;
    Ok(ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .layer(request_id::layer())
        .layer(probes::layer(settings.readiness.clone()))
        .layer(access_log::layer(settings.metrics.clone()))
        .layer(cors::layer(&settings.cors_origins)?)
        .layer(openapi)
        .layer(limits::shed(settings.admission))
        .layer(classify::layer(rest_routes))
        .layer(limits::body_guard(settings.body_limit, settings.body_read_timeout))
        .layer(limits::deadline())
        .layer(auth::layer())
        .service(dispatch))
}
