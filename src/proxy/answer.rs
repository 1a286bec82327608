//! The answers wsgate writes itself instead of a backend's: one catalogue, so status, body,
//! extra headers and metric label never drift apart. An [`Answer`]'s type says whose fault it
//! was — the client's request, the backend, or wsgate — which is what an operator reading
//! `wsgate_local_responses_total{source,reason}` wants to know first.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::limits::Refusal;
use super::upstream::UpstreamBody;
use crate::auth::TokenError;

/// Response body: a backend's streamed body, or one of ours.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

/// A response wsgate makes up, by where the failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The request cannot or may not be served as asked.
    Client(ClientFault),
    /// The backend could not give an answer.
    Backend(BackendFault),
    /// wsgate itself failed; a bug, never the client's doing.
    Internal(InternalFault),
}

/// What was wrong with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// No or malformed Host / `:authority`.
    BadRequest,
    /// No route for the host, or no rule for the path.
    NotFound,
    /// TLS SNI names another route than Host, or a plain-HTTP route was asked over TLS.
    Misdirected,
    /// A normal request to a rule that only serves WebSockets.
    UpgradeRequired,
    /// A WebSocket upgrade from an origin the rule does not allow.
    ForbiddenOrigin,
    /// A client address outside the rule's allowed sources.
    ForbiddenSource,
    /// A request body over the rule's limit.
    PayloadTooLarge,
    /// CONNECT that is not a WebSocket (wsgate is not a forward proxy).
    MethodNotAllowed,
    /// The client went over a per-client limit (sockets, upgrades or requests per second).
    TooMany(Refusal),
    /// The rule wants a JWT and the request has none, or one that does not verify.
    Unauthorized(TokenError),
}

/// Why the backend gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFault {
    /// The backend has no ready endpoint.
    NoEndpoints,
    /// The route names a backend it may not use or that wsgate cannot serve (Gateway API:
    /// that share of the traffic gets 500).
    Unresolved,
    /// The rule's WebSocket capacity is reached (`maxConnections`, or every endpoint at
    /// `maxConnectionsPerEndpoint`): overload, not the client's doing.
    AtCapacity,
    /// Connecting failed, or the connection broke before a response.
    Unreachable,
    /// No response (headers) within the route's timeout.
    Timeout,
    /// The backend switched protocols when it should not have: a 101 to a request that asked
    /// for none, or to anything but `websocket` with the right `Sec-WebSocket-Accept`, or a 2xx
    /// to a WebSocket handshake that arrived as an HTTP/2 CONNECT (which would tell the client
    /// its socket is open).
    BadSwitch,
    /// The rule's external auth service gave no answer in time, or none at all: the request
    /// fails closed.
    AuthUnavailable,
}

/// What went wrong inside wsgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalFault {
    /// A redirect target that is not a valid header value; routes and parsed URIs should
    /// make that impossible.
    BadRedirect,
}

impl Answer {
    /// The `source` metric label.
    pub fn source(self) -> &'static str {
        match self {
            Answer::Client(_) => "client",
            Answer::Backend(_) => "backend",
            Answer::Internal(_) => "internal",
        }
    }

    /// The `reason` metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Answer::Client(f) => match f {
                ClientFault::BadRequest => "bad_request",
                ClientFault::NotFound => "not_found",
                ClientFault::Misdirected => "misdirected",
                ClientFault::UpgradeRequired => "upgrade_required",
                ClientFault::ForbiddenOrigin => "forbidden_origin",
                ClientFault::ForbiddenSource => "forbidden_source",
                ClientFault::PayloadTooLarge => "payload_too_large",
                ClientFault::MethodNotAllowed => "method_not_allowed",
                ClientFault::TooMany(_) => "rate_limited",
                ClientFault::Unauthorized(_) => "unauthorized",
            },
            Answer::Backend(f) => match f {
                BackendFault::NoEndpoints => "no_endpoints",
                BackendFault::Unresolved => "unresolved_backend",
                BackendFault::AtCapacity => "at_capacity",
                BackendFault::Unreachable => "unreachable",
                BackendFault::Timeout => "timeout",
                BackendFault::BadSwitch => "bad_switch",
                BackendFault::AuthUnavailable => "auth_unavailable",
            },
            Answer::Internal(InternalFault::BadRedirect) => "bad_redirect",
        }
    }

    /// HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            Answer::Client(f) => match f {
                ClientFault::BadRequest => StatusCode::BAD_REQUEST,
                ClientFault::NotFound => StatusCode::NOT_FOUND,
                ClientFault::Misdirected => StatusCode::MISDIRECTED_REQUEST,
                ClientFault::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
                ClientFault::ForbiddenOrigin | ClientFault::ForbiddenSource => {
                    StatusCode::FORBIDDEN
                }
                ClientFault::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ClientFault::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                ClientFault::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
                ClientFault::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            },
            Answer::Backend(f) => match f {
                BackendFault::NoEndpoints | BackendFault::AuthUnavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                BackendFault::Unresolved => StatusCode::INTERNAL_SERVER_ERROR,
                BackendFault::AtCapacity => StatusCode::SERVICE_UNAVAILABLE,
                BackendFault::Unreachable | BackendFault::BadSwitch => StatusCode::BAD_GATEWAY,
                BackendFault::Timeout => StatusCode::GATEWAY_TIMEOUT,
            },
            Answer::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Plain-text body of the answer.
    pub fn body(self) -> &'static str {
        match self {
            Answer::Client(f) => match f {
                ClientFault::BadRequest => "400 bad request: missing or malformed Host\n",
                ClientFault::NotFound => "404 not found\n",
                ClientFault::Misdirected => {
                    "421 misdirected request: this connection cannot serve that host\n"
                }
                ClientFault::UpgradeRequired => {
                    "426 upgrade required: this path only serves WebSocket connections\n"
                }
                ClientFault::ForbiddenOrigin => {
                    "403 forbidden: this origin may not open a WebSocket here\n"
                }
                ClientFault::ForbiddenSource => {
                    "403 forbidden: this client address may not use this path\n"
                }
                ClientFault::PayloadTooLarge => {
                    "413 content too large: the request body is over this path's limit\n"
                }
                ClientFault::MethodNotAllowed => {
                    "405 method not allowed: wsgate is not a forward proxy\n"
                }
                ClientFault::TooMany(Refusal::TooManyConnections) => {
                    "429 too many requests: too many open WebSockets from this client\n"
                }
                ClientFault::TooMany(Refusal::TooFast(_)) => {
                    "429 too many requests: too many requests or WebSocket upgrades from this client\n"
                }
                ClientFault::TooMany(Refusal::Full) => {
                    "429 too many requests: too many clients are being tracked; try again shortly\n"
                }
                ClientFault::Unauthorized(TokenError::Missing) => {
                    "401 unauthorized: this path needs a bearer token\n"
                }
                ClientFault::Unauthorized(_) => "401 unauthorized: the token is not valid here\n",
            },
            Answer::Backend(f) => match f {
                BackendFault::NoEndpoints => "503 service unavailable: no ready backend\n",
                BackendFault::AtCapacity => {
                    "503 service unavailable: this WebSocket endpoint is at capacity; retry shortly\n"
                }
                BackendFault::Unresolved => {
                    "500 internal server error: the route's backend is not valid (see its status)\n"
                }
                BackendFault::Unreachable => "502 bad gateway: the backend is unreachable\n",
                BackendFault::Timeout => {
                    "504 gateway timeout: the backend did not answer in time\n"
                }
                BackendFault::BadSwitch => {
                    "502 bad gateway: the backend's protocol switch is not a valid WebSocket handshake\n"
                }
                BackendFault::AuthUnavailable => {
                    "503 service unavailable: the authentication service did not answer\n"
                }
            },
            Answer::Internal(_) => "500 internal server error\n",
        }
    }

    /// The response: status, body, and the headers the status calls for.
    pub fn response(self) -> Response<Body> {
        let mut r = text(self.status(), self.body());
        match self {
            // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
            Answer::Client(ClientFault::UpgradeRequired) => {
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            // RFC 6585 §4: a 429 may say how long to wait.
            Answer::Client(ClientFault::TooMany(refusal)) => {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(refusal.retry_after_secs()),
                );
            }
            // RFC 6750 §3: a 401 says how to authenticate, and why the token failed.
            Answer::Client(ClientFault::Unauthorized(error)) => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    super::auth::www_authenticate(error),
                );
            }
            // RFC 9110 §10.2.3: a 503 may say when to come back.
            Answer::Backend(BackendFault::AtCapacity) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

impl From<ClientFault> for Answer {
    fn from(f: ClientFault) -> Self {
        Answer::Client(f)
    }
}

impl From<BackendFault> for Answer {
    fn from(f: BackendFault) -> Self {
        Answer::Backend(f)
    }
}

/// A short plain-text response that no cache keeps.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A redirect to `location` (301 or 308, as decided).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = text(status, format!("Redirecting to {location}\n"));
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => Answer::Internal(InternalFault::BadRedirect).response(),
    }
}

/// A route's maintenance page.
pub fn maintenance(body: Bytes) -> Response<Body> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    fn every_answer() -> Vec<Answer> {
        let client = [
            ClientFault::BadRequest,
            ClientFault::NotFound,
            ClientFault::Misdirected,
            ClientFault::UpgradeRequired,
            ClientFault::ForbiddenOrigin,
            ClientFault::ForbiddenSource,
            ClientFault::PayloadTooLarge,
            ClientFault::MethodNotAllowed,
            ClientFault::TooMany(Refusal::TooManyConnections),
            ClientFault::TooMany(Refusal::TooFast(Duration::from_millis(1500))),
            ClientFault::TooMany(Refusal::Full),
        ];
        let backend = [
            BackendFault::NoEndpoints,
            BackendFault::Unresolved,
            BackendFault::AtCapacity,
            BackendFault::Unreachable,
            BackendFault::Timeout,
            BackendFault::BadSwitch,
        ];
        let mut all: Vec<Answer> = client.into_iter().map(Answer::from).collect();
        all.extend(backend.into_iter().map(Answer::from));
        all.push(Answer::Internal(InternalFault::BadRedirect));
        all
    }

    #[test]
    fn each_answer_says_its_status_first_and_is_never_cached() {
        for a in every_answer() {
            let r = a.response();
            assert_eq!(r.status(), a.status(), "{a:?}");
            assert!(a.body().starts_with(a.status().as_str()), "{a:?}");
            assert!(a.body().ends_with('\n'), "{a:?}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{a:?}");
            let by_source = match a {
                Answer::Client(_) => a.status().is_client_error(),
                Answer::Backend(_) | Answer::Internal(_) => a.status().is_server_error(),
            };
            assert!(by_source, "{a:?}: a {} status", a.source());
        }
    }

    #[test]
    fn metric_labels_are_distinct_per_fault() {
        let labels: HashSet<(&str, &str)> = every_answer()
            .into_iter()
            .map(|a| (a.source(), a.reason()))
            .collect();
        // The three TooMany refusals share one label; everything else has its own.
        assert_eq!(labels.len(), every_answer().len() - 2);
    }

    #[test]
    fn statuses_that_call_for_a_header_carry_it() {
        let r = Answer::Client(ClientFault::UpgradeRequired).response();
        assert_eq!(r.headers()[header::UPGRADE], "websocket");
        let slow = Refusal::TooFast(Duration::from_millis(1500));
        let r = Answer::Client(ClientFault::TooMany(slow)).response();
        assert_eq!(
            r.headers()[header::RETRY_AFTER],
            slow.retry_after_secs().to_string()
        );
        let r = Answer::Backend(BackendFault::Timeout).response();
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn redirects_carry_the_location_or_fail_as_ours() {
        let r = redirect(StatusCode::PERMANENT_REDIRECT, "https://a.example/p?q");
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://a.example/p?q");
        let r = redirect(StatusCode::MOVED_PERMANENTLY, "https://a.example/\n");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!r.headers().contains_key(header::LOCATION));
    }
}
