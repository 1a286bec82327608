//! Signing keys and tokens made in the tests: RSA (a 2048-bit key from the `openssl` command,
//! as ring cannot generate RSA keys), ECDSA P-256 / P-384 and Ed25519 (ring), and HMAC. Each
//! key gives its public JWK; tokens are signed with ring, so nothing is hard-coded.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

/// A signing key with its `kid` and the `alg` it signs with.
pub struct SigningKey {
    /// `kid` of its JWK and of the tokens it signs.
    pub kid: String,
    /// The JWS `alg` it signs with.
    pub alg: &'static str,
    kind: Kind,
}

enum Kind {
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ec(EcdsaKeyPair, &'static str, usize),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One RSA key (PKCS#1 DER) per test process: `openssl genpkey` takes a moment.
fn rsa_der() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .args(["-outform", "DER"])
            .output()
            .expect("openssl genpkey");
        assert!(out.status.success(), "openssl genpkey failed");
        out.stdout
    })
}

impl SigningKey {
    /// An RSA key signing with `alg` (RS256, RS384, RS512, PS256, PS384 or PS512).
    pub fn rsa(kid: &str, alg: &'static str) -> Self {
        let encoding: &'static dyn signature::RsaEncoding = match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            other => panic!("not an RSA alg: {other}"),
        };
        let pair = RsaKeyPair::from_der(rsa_der()).expect("RSA key");
        Self::with(kid, alg, Kind::Rsa(pair, encoding))
    }

    /// A fresh ECDSA key: ES256 (P-256) or ES384 (P-384).
    pub fn ec(kid: &str, alg: &'static str) -> Self {
        let (params, crv, size) = match alg {
            "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            other => panic!("not an ECDSA alg: {other}"),
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(params, &rng).expect("EC key");
        let pair = EcdsaKeyPair::from_pkcs8(params, pkcs8.as_ref(), &rng).expect("EC key");
        Self::with(kid, alg, Kind::Ec(pair, crv, size))
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
        Self::with(kid, "EdDSA", Kind::Ed(pair))
    }

    /// An HS256 key with this secret.
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        Self::with(kid, "HS256", Kind::Hmac(secret.to_vec()))
    }

    fn with(kid: &str, alg: &'static str, kind: Kind) -> Self {
        SigningKey {
            kid: kid.to_string(),
            alg,
            kind,
        }
    }

    /// The public JWK (for HMAC, the `oct` key itself).
    pub fn jwk(&self) -> Value {
        match &self.kind {
            Kind::Rsa(pair, _) => {
                let parts: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({"kty": "RSA", "kid": self.kid, "n": b64(&parts.n), "e": b64(&parts.e)})
            }
            Kind::Ec(pair, crv, size) => {
                let point = pair.public_key().as_ref();
                let (x, y) = point[1..].split_at(*size);
                json!({"kty": "EC", "crv": crv, "kid": self.kid, "x": b64(x), "y": b64(y)})
            }
            Kind::Ed(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b64(pair.public_key())})
            }
            Kind::Hmac(k) => json!({"kty": "oct", "kid": self.kid, "k": b64(k)}),
        }
    }

    /// The signature of `input`.
    pub fn sign_bytes(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.kind {
            Kind::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, input, &mut sig)
                    .expect("RSA sign");
                sig
            }
            Kind::Ec(pair, ..) => pair.sign(&rng, input).expect("EC sign").as_ref().to_vec(),
            Kind::Ed(pair) => pair.sign(input).as_ref().to_vec(),
            Kind::Hmac(k) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k);
                ring::hmac::sign(&key, input).as_ref().to_vec()
            }
        }
    }

    /// A token with this header and these claims, signed by this key.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    /// A token with the key's `alg` and `kid` and these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg, "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }
}

/// A JWKS of these keys' public JWKs.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Claims valid for `secs` from now, with this issuer and audience.
pub fn claims(iss: &str, aud: &str, secs: u64) -> Value {
    let now = now();
    json!({"iss": iss, "aud": aud, "sub": "alice", "iat": now, "exp": now + secs})
}
