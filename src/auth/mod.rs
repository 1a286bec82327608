//! Token verification at the edge, without I/O: JSON Web Key Sets parsed into keys ([`jwk`])
//! and JSON Web Tokens checked against them ([`jwt`]). The table compiles key sets from
//! Secrets, ConfigMaps and fetched documents; the proxy verifies tokens with them.
//!
//! Depends on [`crate::model`] (the algorithm names) and ring only.

pub mod jwk;
pub mod jwt;

pub use crate::model::Algorithm;
pub use jwk::{Jwk, JwksError, KeyMaterial, KeySet, parse_jwks};
pub use jwt::{Claims, Expect, Token, TokenError};
