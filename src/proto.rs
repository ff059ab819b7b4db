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
    pub mod protoc_gen_zitadel {
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/zitadel.protoc_gen_zitadel.v2.rs"));
            include!(concat!(env!("OUT_DIR"), "/zitadel.protoc_gen_zitadel.v2.serde.rs"));
        }
    }
}

pub use zitadel::session::v2 as session;
