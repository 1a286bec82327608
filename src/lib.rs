//! wsgate: an ingress for WebSocket-heavy applications.
//!
//! Data flows one way: a [`source`] reads user objects, each [`api`] translates its objects into
//! the validated route [`model`], [`table::compile`] turns model routes, Secrets and endpoints
//! into an immutable [`table::RouteTable`], which is published through an `ArcSwap` to the
//! [`proxy`]. The proxy never knows where routes came from; the table never sees an API type.

pub mod admin;
pub mod api;
pub mod auth;
pub mod demo;
pub mod gateway;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod source;
pub mod table;
