use base64::Engine;
use md5::{Digest, Md5};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(42)
}

const SECRET: [u8; KEY_LEN] = [7u8; KEY_LEN];

fn ctx(pairs: &[(&str, &str)]) -> Context {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn seal_unseal_round_trip_each_kind() {
    let mut rng = rng();
    let key = ObjectKey::generate(&mut rng);
    let c = ctx(&[("project", "x")]);
    for b in [
        KeyBinding::sse_s3("b", "o", "k1"),
        KeyBinding::sse_kms("b", "o", "k1", &c),
        KeyBinding::sse_c("b", "o"),
    ] {
        let sealed = SealedKey::seal(&key, &SECRET, &b, &mut rng).expect("seal");
        assert_eq!(sealed.kind, b.kind);
        let back = sealed.unseal(&SECRET, &b).expect("unseal");
        assert_eq!(back.as_bytes(), key.as_bytes());
        let bytes = sealed.to_bytes();
        assert_eq!(bytes.len(), SEALED_KEY_BYTES);
        assert_eq!(SealedKey::from_bytes(&bytes).expect("parse"), sealed);
        let json = serde_json::to_string(&sealed).expect("json");
        let from_json: SealedKey = serde_json::from_str(&json).expect("json back");
        assert_eq!(from_json, sealed);
    }
}

#[test]
fn sealed_key_is_bound_to_object_type_key_id_context_and_secret() {
    let mut rng = rng();
    let key = ObjectKey::generate(&mut rng);
    let c = ctx(&[("project", "x")]);
    let c2 = ctx(&[("project", "y")]);
    let empty = Context::new();
    let orig = KeyBinding::sse_kms("bucket", "dir/obj", "k1", &c);
    let sealed = SealedKey::seal(&key, &SECRET, &orig, &mut rng).expect("seal");
    let wrong = [
        KeyBinding::sse_kms("bucket2", "dir/obj", "k1", &c),
        KeyBinding::sse_kms("bucket", "dir/obj2", "k1", &c),
        KeyBinding::sse_kms("bucketd", "ir/obj", "k1", &c),
        KeyBinding::sse_kms("bucket", "dir/obj", "k2", &c),
        KeyBinding::sse_kms("bucket", "dir/obj", "k1", &c2),
        KeyBinding::sse_kms("bucket", "dir/obj", "k1", &empty),
    ];
    for b in &wrong {
        assert_eq!(
            sealed.unseal(&SECRET, b).err(),
            Some(SseError::KeyUnseal),
            "{b:?}"
        );
    }
    // Another SSE type: both the stored kind and a forged kind field fail.
    let as_s3 = KeyBinding::sse_s3("bucket", "dir/obj", "k1");
    assert_eq!(
        sealed.unseal(&SECRET, &as_s3).err(),
        Some(SseError::KeyUnseal)
    );
    let mut forged = sealed.clone();
    forged.kind = SseKind::S3;
    assert_eq!(
        forged.unseal(&SECRET, &as_s3).err(),
        Some(SseError::KeyUnseal)
    );
    // Another secret (data key).
    assert_eq!(
        sealed.unseal(&[8u8; KEY_LEN], &orig).err(),
        Some(SseError::KeyUnseal)
    );
    // Any flipped byte.
    let bytes = sealed.to_bytes();
    for i in 2..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let parsed = SealedKey::from_bytes(&b).expect("same shape");
        assert_eq!(
            parsed.unseal(&SECRET, &orig).err(),
            Some(SseError::KeyUnseal)
        );
    }
}

#[test]
fn malformed_sealed_keys_are_rejected() {
    let mut rng = rng();
    let key = ObjectKey::generate(&mut rng);
    let b = KeyBinding::sse_s3("b", "o", "k");
    let sealed = SealedKey::seal(&key, &SECRET, &b, &mut rng).expect("seal");
    let bytes = sealed.to_bytes();
    assert!(matches!(
        SealedKey::from_bytes(&[]),
        Err(SseError::MalformedSealedKey(_))
    ));
    assert!(matches!(
        SealedKey::from_bytes(&bytes[..bytes.len() - 1]),
        Err(SseError::MalformedSealedKey(_))
    ));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        SealedKey::from_bytes(&v2).err(),
        Some(SseError::UnsupportedVersion(2))
    );
    let mut kind = bytes.clone();
    kind[1] = 9;
    assert!(matches!(
        SealedKey::from_bytes(&kind),
        Err(SseError::MalformedSealedKey(_))
    ));
    let mut short = sealed.clone();
    short.ciphertext.pop();
    assert!(matches!(
        short.unseal(&SECRET, &b),
        Err(SseError::MalformedSealedKey(_))
    ));
    let mut alg = sealed;
    alg.algorithm = "ROT13".into();
    assert!(matches!(
        alg.unseal(&SECRET, &b),
        Err(SseError::MalformedSealedKey(_))
    ));
}

fn headers(key: &[u8]) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(key), b64.encode(Md5::digest(key)))
}

#[test]
fn sse_c_headers_are_validated() {
    let (k, m) = headers(&[3u8; 32]);
    let ck = CustomerKey::parse("AES256", &k, &m).expect("valid");
    assert_eq!(ck.secret(), &[3u8; 32]);
    assert_eq!(ck.key_md5_b64(), m);

    let (_, other_md5) = headers(&[4u8; 32]);
    assert_eq!(
        CustomerKey::parse("AES256", &k, &other_md5).err(),
        Some(SseError::CustomerKeyMd5Mismatch)
    );
    let (short, short_md5) = headers(&[3u8; 16]);
    assert!(matches!(
        CustomerKey::parse("AES256", &short, &short_md5),
        Err(SseError::CustomerKeyInvalid(_))
    ));
    assert!(matches!(
        CustomerKey::parse("AES128", &k, &m),
        Err(SseError::CustomerKeyInvalid(_))
    ));
    assert!(matches!(
        CustomerKey::parse("AES256", "%%%", &m),
        Err(SseError::CustomerKeyInvalid(_))
    ));
    assert!(matches!(
        CustomerKey::parse("AES256", &k, "%%%"),
        Err(SseError::CustomerKeyInvalid(_))
    ));
}

#[test]
fn sse_c_wrong_key_is_a_distinct_error() {
    let mut rng = rng();
    let right = CustomerKey::from_bytes([1u8; 32]);
    let wrong = CustomerKey::from_bytes([2u8; 32]);
    let stored = right.verifier("b", "o");
    assert!(right.verify("b", "o", &stored).is_ok());
    assert_eq!(
        wrong.verify("b", "o", &stored).err(),
        Some(SseError::CustomerKeyMismatch)
    );
    assert_eq!(
        right.verify("b", "o", &stored[..31]).err(),
        Some(SseError::CustomerKeyMismatch)
    );
    assert_ne!(right.verifier("b", "o2"), stored, "bound to the object");
    assert!(!stored.windows(32).any(|w| w == right.secret()));

    let key = ObjectKey::generate(&mut rng);
    let b = KeyBinding::sse_c("b", "o");
    let sealed = SealedKey::seal(&key, right.secret(), &b, &mut rng).expect("seal");
    assert_eq!(
        sealed.unseal(wrong.secret(), &b).err(),
        Some(SseError::KeyUnseal)
    );
    assert_eq!(
        sealed.unseal(right.secret(), &b).expect("open").as_bytes(),
        key.as_bytes()
    );
}

#[test]
fn errors_do_not_print_keys() {
    let ck = CustomerKey::from_bytes([0xAB; 32]);
    assert_eq!(format!("{ck:?}"), "CustomerKey(..)");
    let ok = ObjectKey::from_bytes([0xAB; 32]);
    assert_eq!(format!("{ok:?}"), "ObjectKey(..)");
}
