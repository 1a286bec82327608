//! JWKS parsing and JWT verification on any bytes: never panics, whatever the key set and the
//! token; a token never verifies against an empty key set; a verified token's claims are an
//! object whose `exp` is the one reported.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::auth::{Algorithm, Expect, KeySet, Token, TokenError, parse_jwks};

fuzz_target!(|data: &[u8]| {
    // `JWKS \n TOKEN`; without a newline the whole input is the token.
    let (jwks, token) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };
    let mut all = Algorithm::ASYMMETRIC.to_vec();
    all.push(Algorithm::HS256);
    let keys = parse_jwks(jwks, true).unwrap_or_default();
    let Ok(parsed) = Token::parse(token, &all) else {
        return;
    };
    assert_eq!(
        parsed.verify(&KeySet::default()),
        Err(TokenError::UnknownKey),
        "verified against no keys"
    );
    if parsed.verify(&keys).is_err() {
        return;
    }
    let expect = Expect {
        issuer: None,
        audiences: &[],
        skew: 30,
    };
    if let Ok(claims) = parsed.claims(&expect, 0) {
        let exp = claims.all.get("exp").and_then(|v| v.as_f64());
        assert_eq!(exp.map(|e| e as u64), Some(claims.exp));
    }
});
