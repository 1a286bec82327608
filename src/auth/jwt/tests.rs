use proptest::prelude::*;
use serde_json::json;
use wsgate_test_support::jwt::{SigningKey, b64, claims, jwks, now};

use super::*;
use crate::auth::parse_jwks;

const ISS: &str = "https://issuer.example";
const AUD: &str = "chat";

fn expect(audiences: &[Box<str>]) -> Expect<'_> {
    Expect {
        issuer: Some(ISS),
        audiences,
        skew: 30,
    }
}

/// Parses, verifies and checks `token` against `keys` the way the proxy does.
fn check(token: &str, keys: &KeySet, allowed: &[Algorithm]) -> Result<Claims, TokenError> {
    let audiences: Vec<Box<str>> = vec![AUD.into()];
    let parsed = Token::parse(token, allowed)?;
    parsed.verify(keys)?;
    parsed.claims(&expect(&audiences), now())
}

fn set(keys: &[&SigningKey], oct: bool) -> KeySet {
    parse_jwks(jwks(keys).as_bytes(), oct).unwrap()
}

#[test]
fn every_supported_algorithm_verifies_and_a_foreign_key_does_not() {
    let keys = [
        SigningKey::rsa("rs256", "RS256"),
        SigningKey::rsa("rs384", "RS384"),
        SigningKey::rsa("rs512", "RS512"),
        SigningKey::rsa("ps256", "PS256"),
        SigningKey::ec("es256", "ES256"),
        SigningKey::ec("es384", "ES384"),
        SigningKey::ed25519("ed"),
    ];
    let all: Vec<&SigningKey> = keys.iter().collect();
    let keyset = set(&all, false);
    for key in &keys {
        let token = key.sign(&claims(ISS, AUD, 60));
        let got = check(&token, &keyset, &Algorithm::ASYMMETRIC);
        assert_eq!(
            got.map(|c| c.all["sub"].clone()),
            Ok(json!("alice")),
            "{}",
            key.alg
        );
    }
    // The same kid with another key's material: the signature does not verify.
    let stranger = SigningKey::ec("es256", "ES256");
    let token = stranger.sign(&claims(ISS, AUD, 60));
    assert_eq!(
        check(&token, &keyset, &Algorithm::ASYMMETRIC).err(),
        Some(TokenError::Signature)
    );
    // A kid the set does not have.
    let unknown = SigningKey::ec("new", "ES256").sign(&claims(ISS, AUD, 60));
    assert_eq!(
        check(&unknown, &keyset, &Algorithm::ASYMMETRIC).err(),
        Some(TokenError::UnknownKey)
    );
}

#[test]
fn claims_are_checked_within_the_skew() {
    let key = SigningKey::ed25519("k");
    let keyset = set(&[&key], false);
    let t = now();
    let with = |c: serde_json::Value| check(&key.sign(&c), &keyset, &Algorithm::ASYMMETRIC);
    let base = json!({"iss": ISS, "aud": AUD, "exp": t + 60});
    let merged = |extra: serde_json::Value| {
        let mut c = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    assert!(with(base.clone()).is_ok());
    assert_eq!(
        with(merged(json!({"exp": t - 31}))).err(),
        Some(TokenError::Expired)
    );
    assert!(
        with(merged(json!({"exp": t - 5}))).is_ok(),
        "within the skew"
    );
    assert_eq!(
        with(merged(json!({"nbf": t + 31}))).err(),
        Some(TokenError::NotYetValid)
    );
    assert!(with(merged(json!({"nbf": t + 5}))).is_ok());
    assert_eq!(
        with(merged(json!({"iat": t + 120}))).err(),
        Some(TokenError::NotYetValid)
    );
    assert_eq!(
        with(json!({"iss": ISS, "aud": AUD})).err(),
        Some(TokenError::NoExpiry)
    );
    assert_eq!(
        with(merged(json!({"exp": "soon"}))).err(),
        Some(TokenError::Malformed)
    );
    assert_eq!(
        with(merged(json!({"iss": "https://evil"}))).err(),
        Some(TokenError::Issuer)
    );
    assert_eq!(
        with(merged(json!({"aud": "other"}))).err(),
        Some(TokenError::Audience)
    );
    assert!(with(merged(json!({"aud": ["other", AUD]}))).is_ok());
    assert_eq!(
        with(merged(json!({"aud": ["other"]}))).err(),
        Some(TokenError::Audience)
    );
    let no_aud = json!({"iss": ISS, "exp": t + 60});
    assert_eq!(with(no_aud).err(), Some(TokenError::Audience));
    // The expiry the proxy will close the socket at.
    assert_eq!(with(base).map(|c| c.exp), Ok(t + 60));
}

#[test]
fn algorithm_confusion_and_none_fail() {
    let rsa = SigningKey::rsa("r", "RS256");
    let keyset = set(&[&rsa], false);
    // The RSA public key, used as an HMAC secret by an attacker who knows it: as the JWK's
    // text, and as the modulus bytes a naive verifier would key HMAC with.
    let public_n = rsa.jwk()["n"].as_str().unwrap().to_string();
    let raw_n =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &public_n)
            .unwrap();
    for secret in [public_n.as_bytes(), &raw_n] {
        let forged = SigningKey::hmac("r", secret).sign(&claims(ISS, AUD, 60));
        let with_hs = [Algorithm::RS256, Algorithm::HS256];
        assert_eq!(
            check(&forged, &keyset, &with_hs).err(),
            Some(TokenError::UnknownKey)
        );
        assert_eq!(
            check(&forged, &keyset, &Algorithm::ASYMMETRIC).err(),
            Some(TokenError::Algorithm)
        );
    }
    // alg none, with and without a signature.
    let body = b64(claims(ISS, AUD, 60).to_string());
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "None"}),
        json!({"alg": "NONE"}),
    ] {
        for sig in ["", "AAAA"] {
            let token = format!("{}.{body}.{sig}", b64(header.to_string()));
            assert_eq!(
                check(&token, &keyset, &Algorithm::ASYMMETRIC).err(),
                Some(TokenError::Algorithm)
            );
        }
    }
    // A critical extension we do not understand.
    let crit = json!({"alg": "RS256", "kid": "r", "crit": ["exp"], "exp": 1});
    let token = rsa.sign_with_header(&crit, &claims(ISS, AUD, 60));
    assert_eq!(
        check(&token, &keyset, &Algorithm::ASYMMETRIC).err(),
        Some(TokenError::Algorithm)
    );
    // A route that allows only ES256 refuses a valid RS256 token.
    let token = rsa.sign(&claims(ISS, AUD, 60));
    assert_eq!(
        check(&token, &keyset, &[Algorithm::ES256]).err(),
        Some(TokenError::Algorithm)
    );
}

#[test]
fn hs256_verifies_only_with_an_oct_key() {
    let key = SigningKey::hmac("h", &[9u8; 32]);
    let keyset = set(&[&key], true);
    let token = key.sign(&claims(ISS, AUD, 60));
    assert!(check(&token, &keyset, &[Algorithm::HS256]).is_ok());
    let wrong = SigningKey::hmac("h", &[8u8; 32]).sign(&claims(ISS, AUD, 60));
    assert_eq!(
        check(&wrong, &keyset, &[Algorithm::HS256]).err(),
        Some(TokenError::Signature)
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let key = SigningKey::ec("k", "ES256");
    let keyset = set(&[&key], false);
    let good = key.sign(&claims(ISS, AUD, 60));
    let (head, rest) = good.split_once('.').unwrap();
    let cases = [
        String::new(),
        "a.b".to_string(),
        format!("{good}."),
        format!("{good}.x"),
        format!("{head}=.{rest}"),
        format!("{head}.{rest}=="),
        good.replace('.', ".."),
        format!("{}.{rest}", b64("not json")),
        format!("{}.{rest}", b64("[1,2]")),
        format!("{}.{rest}", b64(r#"{"alg":"ES256","alg":"ES256"}"#)),
        "x".repeat(MAX_TOKEN_BYTES + 1),
    ];
    for token in cases {
        let got = check(&token, &keyset, &Algorithm::ASYMMETRIC);
        assert!(got.is_err(), "{token:.80}");
    }
    // A signed payload that is not a JSON object.
    let header = json!({"alg": "ES256", "kid": "k"});
    let input = format!("{}.{}", b64(header.to_string()), b64("[]"));
    let token = format!("{input}.{}", b64(key.sign_bytes(input.as_bytes())));
    assert_eq!(
        check(&token, &keyset, &Algorithm::ASYMMETRIC).err(),
        Some(TokenError::Malformed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any string, and any three segments of base64url-encoded bytes: never a panic.
    #[test]
    fn arbitrary_tokens_never_panic(
        raw in ".{0,300}",
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 3),
    ) {
        let keyset = KeySet::default();
        let _ = check(&raw, &keyset, &Algorithm::ASYMMETRIC);
        let token = format!("{}.{}.{}", b64(&parts[0]), b64(&parts[1]), b64(&parts[2]));
        prop_assert!(check(&token, &keyset, &Algorithm::ASYMMETRIC).is_err());
    }

    /// A valid token with one character changed never verifies as the same claims.
    #[test]
    fn tampered_tokens_fail(at in 0usize..400, with in prop::sample::select(vec!['A', 'x', '-', '_', '.', '='])) {
        static KEY: std::sync::OnceLock<(String, KeySet)> = std::sync::OnceLock::new();
        let (good, keyset) = KEY.get_or_init(|| {
            let key = SigningKey::ed25519("k");
            (key.sign(&claims(ISS, AUD, 600)), set(&[&key], false))
        });
        let at = at % good.len();
        let mut tampered: Vec<char> = good.chars().collect();
        prop_assume!(tampered[at] != with);
        tampered[at] = with;
        let tampered: String = tampered.into_iter().collect();
        prop_assert!(check(&tampered, keyset, &Algorithm::ASYMMETRIC).is_err());
    }
}
