//! JSON Web Tokens as OpenID Connect providers sign them: a compact JWS (RFC 7515) whose payload
//! is a claims set (RFC 7519), checked against the keys a provider publishes (a JWK Set,
//! RFC 7517). Parsing is separate from verifying, so hostile input is refused before any key or
//! network is involved.
//!
//! Only asymmetric algorithms are accepted. A provider's keys are public: an HMAC "signed" with
//! one (the `HS256`-with-the-RSA-key confusion) proves nothing, and `none` proves nothing at all.
//! The algorithm must also fit the key it is checked with (an RSA key never checks an ECDSA
//! signature, and a JWK that names its `alg` is used for that one only), so a token cannot pick
//! how a key is interpreted.

use base64::Engine;
use serde_json::{Map, Value};

/// Longest token taken: AWS's limit on `WebIdentityToken`. Every part is decoded into memory, so
/// the bound is checked before anything else.
pub const MAX_TOKEN_LEN: usize = 20_000;
/// Most keys kept from one JWK Set: a token without `kid` is tried against each fitting key, and
/// a provider publishes a handful.
pub const MAX_KEYS: usize = 64;

/// The signature algorithms accepted (JWA names, RFC 7518).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
}

impl Alg {
    /// `None` for everything else, `none` and the `HS*` family included.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// Why a token is refused before any key is tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("the token is not a signed JWT (three base64url parts separated by dots)")]
    Shape,
    #[error("the token's {0} is not base64url-encoded JSON")]
    Encoding(&'static str),
    #[error("the token's {0} is not a JSON object")]
    NotObject(&'static str),
    #[error("the token's signature algorithm {0:?} is not accepted (asymmetric algorithms only)")]
    Algorithm(String),
    #[error("the token marks header parameters critical ({0}), which are not supported")]
    Critical(String),
}

/// A parsed, not yet verified, token.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub alg: Alg,
    /// The key id the provider signed with; many providers with one key leave it out.
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
}

fn b64(part: &str) -> Option<Vec<u8>> {
    // Padding is not part of base64url in JWS; a padded or otherwise off-alphabet part is refused.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64(part).ok_or(JwtError::Encoding(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(JwtError::NotObject(what)),
        Err(_) => Err(JwtError::Encoding(what)),
    }
}

/// Parses a compact JWS; checks its shape and header, not its signature or claims.
pub fn parse(token: &str) -> Result<Jwt, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Shape);
    }
    let head = json_object(header, "header")?;
    let alg = match head.get("alg") {
        Some(Value::String(a)) => Alg::parse(a).ok_or_else(|| JwtError::Algorithm(a.clone()))?,
        Some(other) => return Err(JwtError::Algorithm(other.to_string())),
        None => return Err(JwtError::Algorithm(String::new())),
    };
    // RFC 7515 §4.1.11: a recipient must refuse extensions it does not understand (`b64: false`
    // would change what the signature covers).
    if let Some(crit) = head.get("crit") {
        return Err(JwtError::Critical(crit.to_string()));
    }
    let kid = match head.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::NotObject("key id")),
    };
    let claims = json_object(payload, "claims")?;
    let signature = b64(signature).ok_or(JwtError::Encoding("signature"))?;
    Ok(Jwt {
        alg,
        kid,
        claims,
        signing_input: format!("{header}.{payload}"),
        signature,
    })
}

/// The elliptic curves of ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of one coordinate.
    fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros (as aws-lc-rs takes them).
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point `04 || x || y`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// One signing key of a provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The one algorithm the key is for, when the provider says.
    pub alg: Option<Alg>,
    key: PublicKey,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kty = match &self.key {
            PublicKey::Rsa { n, .. } => format!("RSA-{}", n.len() * 8),
            PublicKey::Ec { curve, .. } => format!("EC-{curve:?}"),
            PublicKey::Ed25519(_) => "Ed25519".to_owned(),
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &kty)
            .finish()
    }
}

fn strip_zeros(mut b: Vec<u8>) -> Vec<u8> {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    b.drain(..zeros);
    b
}

impl Jwk {
    /// One key of a JWK Set; `None` for keys that cannot sign JWTs here (encryption keys,
    /// symmetric keys, unknown types or curves, malformed members).
    fn from_json(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let s = |name: &str| o.get(name).and_then(Value::as_str);
        if s("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match s("alg") {
            None => None,
            // A key for an algorithm not accepted here (HS256, RSA-OAEP...) is not used at all.
            Some(a) => Some(Alg::parse(a)?),
        };
        let field = |name: &str| s(name).and_then(b64);
        let key = match s("kty")? {
            "RSA" => {
                let n = strip_zeros(field("n")?);
                let e = strip_zeros(field("e")?);
                // 2048 bits at least (aws-lc-rs refuses smaller moduli for these algorithms
                // anyway), 8192 at most.
                if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 8 {
                    return None;
                }
                PublicKey::Rsa { n, e }
            }
            "EC" => {
                let curve = match s("crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    "P-521" => Curve::P521,
                    _ => return None,
                };
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != curve.size() || y.len() != curve.size() {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * curve.size());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec { curve, point }
            }
            "OKP" if s("crv")? == "Ed25519" => {
                let x = field("x")?;
                if x.len() != 32 {
                    return None;
                }
                PublicKey::Ed25519(x)
            }
            _ => return None,
        };
        let jwk = Self {
            kid: s("kid").map(str::to_owned),
            alg,
            key,
        };
        // The key's own algorithm must fit its type (an RSA key marked ES256 is a broken key).
        match jwk.alg {
            Some(a) if !jwk.kind_fits(a) => None,
            _ => Some(jwk),
        }
    }

    fn kind_fits(&self, alg: Alg) -> bool {
        use Alg::*;
        match (&self.key, alg) {
            (PublicKey::Rsa { .. }, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512) => true,
            (PublicKey::Ec { curve, .. }, _) => matches!(
                (curve, alg),
                (Curve::P256, Es256) | (Curve::P384, Es384) | (Curve::P521, Es512)
            ),
            (PublicKey::Ed25519(_), EdDsa) => true,
            _ => false,
        }
    }

    /// Whether this key may check a signature made with `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.kind_fits(alg)
    }

    /// Whether `jwt`'s signature is this key's over the token.
    pub fn verifies(&self, jwt: &Jwt) -> bool {
        use aws_lc_rs::signature as sig;
        if !self.fits(jwt.alg) {
            return false;
        }
        let msg = jwt.signing_input.as_bytes();
        let signature = jwt.signature.as_slice();
        match &self.key {
            PublicKey::Rsa { n, e } => {
                let params = match jwt.alg {
                    Alg::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Alg::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Alg::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .is_ok()
            }
            PublicKey::Ec { curve, point } => {
                let alg = match curve {
                    Curve::P256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &sig::ECDSA_P384_SHA384_FIXED,
                    Curve::P521 => &sig::ECDSA_P521_SHA512_FIXED,
                };
                sig::UnparsedPublicKey::new(alg, point)
                    .verify(msg, signature)
                    .is_ok()
            }
            PublicKey::Ed25519(x) => sig::UnparsedPublicKey::new(&sig::ED25519, x)
                .verify(msg, signature)
                .is_ok(),
        }
    }
}

/// A provider's published keys, as far as they are usable.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Keys of the document left out (other uses, types or algorithms, or past [`MAX_KEYS`]).
    pub skipped: usize,
}

impl KeySet {
    /// Parses a JWK Set document (`{"keys": [...]}`).
    pub fn parse(doc: &[u8]) -> Result<Self, String> {
        let v: Value =
            serde_json::from_slice(doc).map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
        let list = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWK Set has no \"keys\" array")?;
        let mut set = Self::default();
        for k in list {
            match Jwk::from_json(k) {
                Some(jwk) if set.keys.len() < MAX_KEYS => set.keys.push(jwk),
                _ => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// Whether one of the keys that may have signed `jwt` did.
    pub fn verifies(&self, jwt: &Jwt) -> bool {
        self.candidates(jwt).any(|k| k.verifies(jwt))
    }

    /// The keys that may have signed `jwt`: the one its `kid` names, else every key fitting
    /// its algorithm (providers with one key often leave `kid` out).
    pub fn candidates<'a>(&'a self, jwt: &'a Jwt) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| {
            k.fits(jwt.alg)
                && match (&jwt.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => true,
                    (None, _) => true,
                }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rand::{Rng, SeedableRng};

    pub(crate) fn enc(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A test signer: a key pair, its JWK and a function signing `header.payload`.
    pub(crate) enum Signer {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    impl Signer {
        pub(crate) fn rsa() -> Self {
            Self::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
        }
        pub(crate) fn ec() -> Self {
            Self::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
        }
        pub(crate) fn ed() -> Self {
            Self::Ed(Ed25519KeyPair::generate().unwrap())
        }

        pub(crate) fn alg(&self) -> &'static str {
            match self {
                Self::Rsa(_) => "RS256",
                Self::Ec(_) => "ES256",
                Self::Ed(_) => "EdDSA",
            }
        }

        pub(crate) fn jwk(&self, kid: Option<&str>) -> Value {
            let mut v = match self {
                Self::Rsa(k) => {
                    let (n, e) = rsa_components(k.public_key().as_ref());
                    serde_json::json!({"kty": "RSA", "n": enc(n), "e": enc(e)})
                }
                Self::Ec(k) => {
                    let p = k.public_key().as_ref();
                    serde_json::json!({"kty": "EC", "crv": "P-256", "x": enc(&p[1..33]), "y": enc(&p[33..])})
                }
                Self::Ed(k) => {
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": enc(k.public_key().as_ref())})
                }
            };
            if let Some(kid) = kid {
                v["kid"] = kid.into();
            }
            v
        }

        pub(crate) fn token(&self, kid: Option<&str>, claims: &Value) -> String {
            let mut header = serde_json::json!({"alg": self.alg(), "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = kid.into();
            }
            let input = format!(
                "{}.{}",
                enc(header.to_string().as_bytes()),
                enc(claims.to_string().as_bytes())
            );
            let rng = SystemRandom::new();
            let sig = match self {
                Self::Rsa(k) => {
                    let mut out = vec![0; k.public_modulus_len()];
                    k.sign(
                        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut out,
                    )
                    .unwrap();
                    out
                }
                Self::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
                Self::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            };
            format!("{input}.{}", enc(&sig))
        }
    }

    /// Modulus and exponent of a DER `RSAPublicKey` (PKCS #1: a sequence of two integers).
    fn rsa_components(der: &[u8]) -> (&[u8], &[u8]) {
        fn item(b: &[u8]) -> (&[u8], &[u8]) {
            let (len, head) = match b[1] {
                short if short < 0x80 => (short as usize, 2),
                long => {
                    let n = (long & 0x7f) as usize;
                    let len = b[2..2 + n].iter().fold(0, |a, x| a << 8 | *x as usize);
                    (len, 2 + n)
                }
            };
            (&b[head..head + len], &b[head + len..])
        }
        let (seq, _) = item(der);
        let (n, rest) = item(seq);
        let (e, _) = item(rest);
        (n, e)
    }

    fn set(keys: &[Value]) -> KeySet {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn verified(set: &KeySet, token: &str) -> bool {
        set.verifies(&parse(token).unwrap())
    }

    #[test]
    fn each_key_type_verifies_its_own_signatures_only() {
        let claims = serde_json::json!({"sub": "alice"});
        let signers = [Signer::rsa(), Signer::ec(), Signer::ed()];
        for s in &signers {
            let keys = set(&[s.jwk(Some("k1"))]);
            assert_eq!(keys.keys.len(), 1, "{}", s.alg());
            assert!(
                verified(&keys, &s.token(Some("k1"), &claims)),
                "{}",
                s.alg()
            );
            assert!(
                verified(&keys, &s.token(None, &claims)),
                "{} without kid",
                s.alg()
            );
            // Another kid names no key here.
            assert!(
                !verified(&keys, &s.token(Some("k2"), &claims)),
                "{}",
                s.alg()
            );
            // A changed payload breaks the signature.
            let t = s.token(Some("k1"), &claims);
            let parts: Vec<&str> = t.split('.').collect();
            let forged = format!("{}.{}.{}", parts[0], enc(br#"{"sub":"mallory"}"#), parts[2]);
            assert!(!verified(&keys, &forged), "{}", s.alg());
        }
        // A key never checks another key's signatures.
        let (a, b) = (Signer::rsa(), Signer::rsa());
        assert!(!verified(&set(&[a.jwk(None)]), &b.token(None, &claims)));
    }

    #[test]
    fn a_key_is_used_for_its_own_algorithm_only() {
        let rsa = Signer::rsa();
        let mut jwk = rsa.jwk(Some("k"));
        jwk["alg"] = "PS256".into();
        let keys = set(&[jwk]);
        let jwt = parse(&rsa.token(Some("k"), &serde_json::json!({}))).unwrap();
        assert_eq!(
            keys.candidates(&jwt).count(),
            0,
            "an RS256 token for a PS256 key"
        );
        // Keys that are not for signing JWTs are left out.
        let mut enc_key = rsa.jwk(None);
        enc_key["use"] = "enc".into();
        let mut hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        hmac["alg"] = "HS256".into();
        let mut mismatched = rsa.jwk(None);
        mismatched["alg"] = "ES256".into();
        let keys = set(&[enc_key, hmac, mismatched]);
        assert_eq!((keys.keys.len(), keys.skipped), (0, 3));
    }

    fn header(h: &Value) -> String {
        enc(h.to_string().as_bytes())
    }

    #[test]
    fn hostile_tokens_are_refused_before_any_key() {
        let claims = enc(br#"{"sub":"a"}"#);
        let cases: Vec<(String, JwtError)> = vec![
            ("".into(), JwtError::Shape),
            ("a.b".into(), JwtError::Shape),
            ("a.b.c.d".into(), JwtError::Shape),
            ("..".into(), JwtError::Shape),
            (
                format!("{}.{claims}.", header(&serde_json::json!({"alg": "none"}))),
                JwtError::Shape,
            ),
            (
                format!(
                    "{}.{claims}.AA",
                    header(&serde_json::json!({"alg": "none"}))
                ),
                JwtError::Algorithm("none".into()),
            ),
            (
                format!(
                    "{}.{claims}.AA",
                    header(&serde_json::json!({"alg": "HS256"}))
                ),
                JwtError::Algorithm("HS256".into()),
            ),
            (
                format!(
                    "{}.{claims}.AA",
                    header(&serde_json::json!({"alg": "RS256", "crit": ["b64"], "b64": false}))
                ),
                JwtError::Critical("[\"b64\"]".into()),
            ),
            (
                format!("{}.{claims}.AA", header(&serde_json::json!({"typ": "JWT"}))),
                JwtError::Algorithm(String::new()),
            ),
            (
                format!("{}.{claims}.AA", header(&serde_json::json!({"alg": 256}))),
                JwtError::Algorithm("256".into()),
            ),
            (format!("!!.{claims}.AA"), JwtError::Encoding("header")),
            (
                format!(
                    "{}=.{claims}.AA",
                    header(&serde_json::json!({"alg": "RS256"}))
                ),
                JwtError::Encoding("header"),
            ),
            (
                format!("{}.{claims}.AA", enc(b"[1]")),
                JwtError::NotObject("header"),
            ),
            (
                format!(
                    "{}.{}.AA",
                    header(&serde_json::json!({"alg": "RS256"})),
                    enc(b"\"s\"")
                ),
                JwtError::NotObject("claims"),
            ),
            (
                format!(
                    "{}.{claims}.A",
                    header(&serde_json::json!({"alg": "RS256"}))
                ),
                JwtError::Encoding("signature"),
            ),
            ("a".repeat(MAX_TOKEN_LEN + 1), JwtError::TooLong),
        ];
        for (token, want) in cases {
            assert_eq!(parse(&token).err(), Some(want), "{token:.80}");
        }
    }

    /// Random bytes, random dots, huge and truncated segments: no panic, and nothing verifies.
    #[test]
    fn fuzzed_tokens_never_panic_nor_verify() {
        let s = Signer::rsa();
        let keys = set(&[s.jwk(None)]);
        let good = s.token(
            None,
            &serde_json::json!({"sub": "a", "policy": "readwrite"}),
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
        let alphabet = b"ABCabc019-_.=+/ \x00\xff{}\"";
        for i in 0..20_000 {
            let token = match i % 4 {
                // Random text over an alphabet rich in separators.
                0 => {
                    let len = rng.gen_range(0..200);
                    (0..len)
                        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
                        .collect::<String>()
                }
                // The good token with bytes flipped.
                1 => {
                    let mut b = good.clone().into_bytes();
                    for _ in 0..rng.gen_range(1..4) {
                        let at = rng.gen_range(0..b.len());
                        b[at] = alphabet[rng.gen_range(0..alphabet.len())];
                    }
                    String::from_utf8_lossy(&b).into_owned()
                }
                // The good token cut short.
                2 => good[..rng.gen_range(0..good.len())].to_owned(),
                // Random bytes, lossily UTF-8.
                _ => {
                    let len = rng.gen_range(0..400);
                    let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    String::from_utf8_lossy(&b).into_owned()
                }
            };
            if let Ok(jwt) = parse(&token) {
                if token != good && keys.verifies(&jwt) {
                    // A flip inside base64 padding bits can leave the bytes unchanged; only the
                    // exact same header, claims and signature may verify.
                    let g = parse(&good).unwrap();
                    assert_eq!(
                        (jwt.signing_input.clone(), jwt.signature.clone()),
                        (g.signing_input, g.signature),
                        "{token}"
                    );
                }
            }
        }
        // Huge segments within the bound, deep nesting, and a big claims set.
        let huge = format!(
            "{}.{}.{}",
            "A".repeat(6000),
            "B".repeat(6000),
            "C".repeat(6000)
        );
        assert!(parse(&huge).is_err());
        let deep = format!(
            "{}.{}.AA",
            header(&serde_json::json!({"alg": "RS256"})),
            enc(format!("{}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes())
        );
        assert!(parse(&deep).is_err());
        // A token signed by the key but with a huge signature part is refused by the key.
        let jwt = parse(&format!(
            "{}.{}.{}",
            header(&serde_json::json!({"alg": "RS256"})),
            enc(b"{}"),
            enc(&[7u8; 4096])
        ))
        .unwrap();
        assert!(!keys.verifies(&jwt));
    }

    #[test]
    fn hostile_key_sets_are_refused_or_trimmed() {
        let docs: [&[u8]; 5] = [b"", b"[]", b"{}", b"{\"keys\": 3}", b"\xff"];
        for doc in docs {
            assert!(KeySet::parse(doc).is_err(), "{doc:?}");
        }
        let junk = serde_json::json!({"keys": [1, "x", null, {"kty": "RSA", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "X25519", "x": enc(&[1; 32])}]});
        let set = KeySet::parse(junk.to_string().as_bytes()).unwrap();
        assert_eq!((set.keys.len(), set.skipped), (0, 7));
        let s = Signer::ed();
        let many: Vec<Value> = (0..MAX_KEYS + 5)
            .map(|i| s.jwk(Some(&i.to_string())))
            .collect();
        let set =
            KeySet::parse(serde_json::json!({ "keys": many }).to_string().as_bytes()).unwrap();
        assert_eq!((set.keys.len(), set.skipped), (MAX_KEYS, 5));
    }
}
