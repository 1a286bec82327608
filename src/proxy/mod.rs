//! The data plane: listeners, TLS, forwarding and the upgrade relay.
//!
//! Depends on [`crate::table`] only: routes arrive as an `ArcSwap<RouteTable>` and the proxy
//! neither knows nor cares which source built it.

pub mod decide;
pub mod headers;
