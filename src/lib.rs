//! wsgate: an ingress for WebSocket-heavy applications.
//!
//! Data flows one way: a [`source`] produces route and secret objects, [`table::compile`] turns
//! them into an immutable [`table::RouteTable`], which is published through an `ArcSwap` to the
//! [`proxy`]. The proxy never knows where routes came from.

pub mod admin;
pub mod api;
pub mod demo;
pub mod gateway;
pub mod model;
pub mod proxy;
pub mod source;
pub mod table;
