//! Server-side encryption, black-box with `aws-sdk-s3`: SSE-S3, SSE-KMS and SSE-C round trips at
//! package boundaries, ranged and `partNumber` GETs, multipart, CopyObject (SSE-C source, key
//! rotation), SSE-C denials, bucket default and auto-encryption, the admin CLI, no plaintext on
//! any drive file, and tampered shards never turning into wrong bytes.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedPart, ServerSideEncryption as Sse, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use cairn_tests::*;

/// The static KMS key the servers run with (`CAIRN_KMS_SECRET_KEY=NAME:BASE64`).
const KMS_KEY_NAME: &str = "cairn-test-key";
const KMS_KEY_B64: &str = "IyqsU3kMFloCNup4BsZtf/rmfHVcTgznO2F25CkEH1g=";

fn kms_env() -> String {
    format!("{KMS_KEY_NAME}:{KMS_KEY_B64}")
}

async fn start(auto_encryption: bool) -> Server {
    // Plain HTTP: SSE-C needs the test-rig opt-out.
    let mut opts = ServerOptions::new(4)
        .env("CAIRN_KMS_SECRET_KEY", &kms_env())
        .env("CAIRN_INSECURE_SSE_C", "on");
    if auto_encryption {
        opts = opts.env("CAIRN_KMS_AUTO_ENCRYPTION", "on");
    }
    Server::start_with(opts).await
}

/// An SSE-C key and its headers' values.
#[derive(Clone)]
struct CustomerKey {
    key_b64: String,
    md5_b64: String,
}

impl CustomerKey {
    fn new(byte: u8) -> Self {
        let key = [byte; 32];
        Self {
            key_b64: b64(&key),
            md5_b64: md5_b64(&key),
        }
    }
}

/// The three ways to ask for encryption.
#[derive(Clone)]
enum Mode {
    S3,
    Kms,
    C(CustomerKey),
}

impl Mode {
    fn all() -> Vec<(&'static str, Mode)> {
        vec![
            ("sse-s3", Mode::S3),
            ("sse-kms", Mode::Kms),
            ("sse-c", Mode::C(CustomerKey::new(7))),
        ]
    }
}

/// The SSE-KMS context the tests send: base64 of a JSON object.
fn kms_context() -> String {
    b64(br#"{"project":"cairn"}"#)
}

/// Applies `mode`'s headers to any request builder with the usual SSE setters.
macro_rules! with_sse {
    ($req:expr, $mode:expr) => {{
        let r = $req;
        match $mode {
            Mode::S3 => r.server_side_encryption(Sse::Aes256),
            Mode::Kms => r
                .server_side_encryption(Sse::AwsKms)
                .ssekms_key_id(KMS_KEY_NAME)
                .ssekms_encryption_context(kms_context()),
            Mode::C(k) => r
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64),
        }
    }};
}

/// Adds the SSE-C headers a read needs (none for the other modes).
macro_rules! with_read_key {
    ($req:expr, $mode:expr) => {{
        let r = $req;
        match $mode {
            Mode::C(k) => r
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64),
            _ => r,
        }
    }};
}

/// Checks the SSE headers of any response with the usual getters.
macro_rules! assert_sse_headers {
    ($resp:expr, $mode:expr, $what:expr) => {{
        let r = &$resp;
        match $mode {
            Mode::S3 => {
                assert_eq!(r.server_side_encryption(), Some(&Sse::Aes256), "{}", $what);
                assert_eq!(r.sse_customer_algorithm(), None, "{}", $what);
            }
            Mode::Kms => {
                assert_eq!(r.server_side_encryption(), Some(&Sse::AwsKms), "{}", $what);
                assert_eq!(r.ssekms_key_id(), Some(KMS_KEY_NAME), "{}", $what);
            }
            Mode::C(k) => {
                assert_eq!(r.server_side_encryption(), None, "{}", $what);
                assert_eq!(r.sse_customer_algorithm(), Some("AES256"), "{}", $what);
                assert_eq!(
                    r.sse_customer_key_md5(),
                    Some(k.md5_b64.as_str()),
                    "{}",
                    $what
                );
            }
        }
    }};
}

async fn body_of(r: GetObjectOutput) -> Vec<u8> {
    r.body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec()
}

async fn put_sse(c: &Client, bucket: &str, key: &str, data: &[u8], mode: &Mode) -> String {
    let r = ok(
        with_sse!(
            c.put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(data.to_vec())),
            mode
        )
        .send()
        .await,
        &format!("PUT {key}"),
    );
    assert_sse_headers!(r, mode, format!("PUT {key}"));
    r.e_tag().unwrap_or_default().to_string()
}

async fn get_sse(c: &Client, bucket: &str, key: &str, mode: &Mode, range: Option<&str>) -> Vec<u8> {
    let mut req = with_read_key!(c.get_object().bucket(bucket).key(key), mode);
    if let Some(r) = range {
        req = req.range(r);
    }
    let r = ok(req.send().await, &format!("GET {key} {range:?}"));
    assert_sse_headers!(r, mode, format!("GET {key}"));
    body_of(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_round_trips_around_package_boundaries_with_ranges_and_head() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "enc").await;
    let big = random_bytes(20 * MIB, 20);
    for (name, mode) in Mode::all() {
        for size in [0usize, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 20 * MIB] {
            let key = format!("{name}/{size}");
            let data = &big[..size];
            let etag = put_sse(&c, "enc", &key, data, &mode).await;
            match mode {
                Mode::C(_) => assert_ne!(etag, etag_of(data), "{key}: SSE-C ETag must be opaque"),
                _ => assert_eq!(etag, etag_of(data), "{key}: ETag is the plaintext MD5"),
            }
            let got = get_sse(&c, "enc", &key, &mode, None).await;
            assert_bytes_eq(&got, data, &key);
            let head = ok(
                with_read_key!(c.head_object().bucket("enc").key(&key), &mode)
                    .send()
                    .await,
                &format!("HEAD {key}"),
            );
            assert_sse_headers!(head, &mode, format!("HEAD {key}"));
            assert_eq!(head.content_length(), Some(size as i64), "{key}: HEAD size");
            assert_eq!(head.e_tag(), Some(etag.as_str()), "{key}: HEAD ETag");
        }
        // Ranges inside one package, across package boundaries, spanning many, at both ends.
        let key = format!("{name}/{}", 20 * MIB);
        let p = 64 * KIB;
        for (a, b) in [
            (0, 0),
            (p - 10, p + 9),
            (p, 2 * p - 1),
            (3 * p - 1, 3 * p),
            (100_000, 1_400_000),
            (20 * MIB - 5, 20 * MIB - 1),
        ] {
            let range = format!("bytes={a}-{b}");
            let got = get_sse(&c, "enc", &key, &mode, Some(&range)).await;
            assert_bytes_eq(&got, &big[a..=b], &format!("{key} {range}"));
        }
        let got = get_sse(&c, "enc", &key, &mode, Some("bytes=-70000")).await;
        assert_bytes_eq(&got, &big[20 * MIB - 70_000..], &format!("{key} suffix"));
    }
    // Listing shows the plaintext sizes.
    let listed = ok(
        c.list_objects_v2()
            .bucket("enc")
            .prefix("sse-c/")
            .send()
            .await,
        "list",
    );
    let sizes: Vec<i64> = listed.contents().iter().filter_map(|o| o.size()).collect();
    assert!(sizes.contains(&(64 * KIB as i64 + 1)), "{sizes:?}");
    assert!(sizes.contains(&0), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_encrypt_each_part_and_serve_ranges_and_part_numbers() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "multi").await;
    // Three parts of 40 MiB, 40 MiB and 20 MiB + 3 bytes: the issue's 100 MiB per mode.
    let sizes = [40 * MIB, 40 * MIB, 20 * MIB + 3];
    let data = random_bytes(sizes.iter().sum(), 33);
    for (name, mode) in Mode::all() {
        let key = format!("{name}-mp");
        let created = ok(
            with_sse!(c.create_multipart_upload().bucket("multi").key(&key), &mode)
                .send()
                .await,
            "create upload",
        );
        assert_sse_headers!(created, &mode, "CreateMultipartUpload");
        let id = created.upload_id().expect("upload id").to_string();
        let mut parts = Vec::new();
        let mut at = 0;
        for (i, n) in sizes.iter().enumerate() {
            let number = i as i32 + 1;
            let chunk = &data[at..at + n];
            at += n;
            let up = ok(
                with_read_key!(
                    c.upload_part()
                        .bucket("multi")
                        .key(&key)
                        .upload_id(&id)
                        .part_number(number)
                        .body(ByteStream::from(chunk.to_vec())),
                    &mode
                )
                .send()
                .await,
                &format!("{key} part {number}"),
            );
            assert_sse_headers!(up, &mode, format!("UploadPart {number}"));
            if !matches!(mode, Mode::C(_)) {
                assert_eq!(up.e_tag(), Some(etag_of(chunk).as_str()), "part ETag");
            }
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(up.e_tag().unwrap_or_default())
                    .build(),
            );
        }
        let done = complete_multipart(&c, "multi", &key, &id, parts).await;
        if !matches!(mode, Mode::C(_)) {
            let chunks = [
                &data[..sizes[0]],
                &data[sizes[0]..sizes[0] + sizes[1]],
                &data[sizes[0] + sizes[1]..],
            ];
            assert_eq!(done.e_tag(), Some(multipart_etag(chunks).as_str()));
        }
        let got = get_sse(&c, "multi", &key, &mode, None).await;
        assert_bytes_eq(&got, &data, &key);
        // A range across the first part boundary, and one across the second.
        let (first, second) = (sizes[0], sizes[0] + sizes[1]);
        for (a, b) in [(first - 100, first + 100), (second - 1, second + 70_000)] {
            let range = format!("bytes={a}-{b}");
            let got = get_sse(&c, "multi", &key, &mode, Some(&range)).await;
            assert_bytes_eq(&got, &data[a..=b], &format!("{key} {range}"));
        }
        let r = ok(
            with_read_key!(
                c.get_object().bucket("multi").key(&key).part_number(2),
                &mode
            )
            .send()
            .await,
            "GET partNumber=2",
        );
        assert_eq!(r.parts_count(), Some(3));
        let got = body_of(r).await;
        assert_bytes_eq(&got, &data[first..second], "partNumber=2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_needs_the_right_key_and_copy_re_encrypts() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "ssec").await;
    let data = random_bytes(200 * KIB, 5);
    let right = Mode::C(CustomerKey::new(1));
    let wrong = Mode::C(CustomerKey::new(2));
    put_sse(&c, "ssec", "obj", &data, &right).await;

    let missing = c.get_object().bucket("ssec").key("obj").send().await;
    assert_s3_err(missing, 400, Some("InvalidRequest"), "GET without the key");
    let bad = with_read_key!(c.get_object().bucket("ssec").key("obj"), &wrong)
        .send()
        .await;
    assert_s3_err(bad, 403, Some("AccessDenied"), "GET with the wrong key");
    let head = c.head_object().bucket("ssec").key("obj").send().await;
    assert_s3_err(head, 400, None, "HEAD without the key");
    let head = with_read_key!(c.head_object().bucket("ssec").key("obj"), &wrong)
        .send()
        .await;
    assert_s3_err(head, 403, None, "HEAD with the wrong key");

    // A key whose MD5 header does not match.
    let k = CustomerKey::new(3);
    let mismatch = c
        .put_object()
        .bucket("ssec")
        .key("bad-md5")
        .body(ByteStream::from_static(b"x"))
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&k.key_b64)
        .sse_customer_key_md5(md5_b64(b"not the key"))
        .send()
        .await;
    assert_s3_err(mismatch, 400, Some("InvalidArgument"), "SSE-C MD5 mismatch");
    // SSE-C headers on an object that is not SSE-C.
    put(&c, "ssec", "plain", b"plain").await;
    let r = with_read_key!(c.get_object().bucket("ssec").key("plain"), &right)
        .send()
        .await;
    assert_s3_err(
        r,
        400,
        Some("InvalidRequest"),
        "SSE-C key for a plain object",
    );

    // CopyObject from an SSE-C source needs the source key, then writes under the new settings.
    let no_source_key = c
        .copy_object()
        .bucket("ssec")
        .key("copy")
        .copy_source("ssec/obj")
        .send()
        .await;
    assert_s3_err(
        no_source_key,
        400,
        Some("InvalidRequest"),
        "copy w/o source key",
    );
    let Mode::C(rk) = &right else { unreachable!() };
    let copied = ok(
        c.copy_object()
            .bucket("ssec")
            .key("copy")
            .copy_source("ssec/obj")
            .copy_source_sse_customer_algorithm("AES256")
            .copy_source_sse_customer_key(&rk.key_b64)
            .copy_source_sse_customer_key_md5(&rk.md5_b64)
            .server_side_encryption(Sse::Aes256)
            .send()
            .await,
        "copy SSE-C -> SSE-S3",
    );
    assert_eq!(copied.server_side_encryption(), Some(&Sse::Aes256));
    let got = get_sse(&c, "ssec", "copy", &Mode::S3, None).await;
    assert_bytes_eq(&got, &data, "copy");

    // Copy onto itself with new SSE settings rotates the key: SSE-S3 -> SSE-C (another key).
    let other = Mode::C(CustomerKey::new(9));
    let Mode::C(ok_key) = &other else {
        unreachable!()
    };
    ok(
        c.copy_object()
            .bucket("ssec")
            .key("copy")
            .copy_source("ssec/copy")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&ok_key.key_b64)
            .sse_customer_key_md5(&ok_key.md5_b64)
            .send()
            .await,
        "rotate onto itself",
    );
    let got = get_sse(&c, "ssec", "copy", &other, None).await;
    assert_bytes_eq(&got, &data, "rotated");
    let stale = c.get_object().bucket("ssec").key("copy").send().await;
    assert_s3_err(
        stale,
        400,
        Some("InvalidRequest"),
        "rotated object needs its key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_errors_are_clear_and_sse_s3_uses_the_registry_default_key() {
    // No static key: the site's key registry is the KMS, and SSE-S3 uses its `cairn-default`.
    let srv = Server::start(4).await;
    let c = srv.client();
    create_bucket(&c, "kms-errors").await;
    let sse_s3 = || {
        c.put_object()
            .bucket("kms-errors")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(Sse::Aes256)
            .send()
    };
    assert_s3_err(
        sse_s3().await,
        400,
        Some("KMS.NotFoundException"),
        "SSE-S3 before the default key exists",
    );
    let r = put_kms(&c, "kms-errors", "x", b"x", "no-such-key").await;
    assert_s3_err(r, 400, Some("KMS.NotFoundException"), "unknown KMS key");
    let admin = Admin::new(&srv).await;
    let (done, _, err) = admin
        .run(&["kms", "key", "create", "site", "cairn-default"])
        .await;
    assert!(done, "create cairn-default: {err}");
    ok(sse_s3().await, "SSE-S3 with the default key");
    assert_eq!(get_sse(&c, "kms-errors", "x", &Mode::S3, None).await, b"x");
}

async fn put_kms(
    c: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
    kms_key: &str,
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .server_side_encryption(Sse::AwsKms)
        .ssekms_key_id(kms_key)
        .send()
        .await
}

fn bucket_default(alg: Sse, key: Option<&str>) -> ServerSideEncryptionConfiguration {
    ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(alg)
                        .set_kms_master_key_id(key.map(str::to_string))
                        .build()
                        .expect("by default"),
                )
                .build(),
        )
        .build()
        .expect("config")
}

async fn head_sse(c: &Client, bucket: &str, key: &str) -> Option<Sse> {
    let h = ok(
        c.head_object().bucket(bucket).key(key).send().await,
        &format!("HEAD {key}"),
    );
    h.server_side_encryption().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_default_and_auto_encryption_apply_exactly_without_headers() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "def").await;
    let none = c.get_bucket_encryption().bucket("def").send().await;
    assert_s3_err(
        none,
        404,
        Some("ServerSideEncryptionConfigurationNotFoundError"),
        "no default yet",
    );
    put(&c, "def", "before", b"plain").await;
    assert_eq!(head_sse(&c, "def", "before").await, None);

    ok(
        c.put_bucket_encryption()
            .bucket("def")
            .server_side_encryption_configuration(bucket_default(Sse::AwsKms, Some(KMS_KEY_NAME)))
            .send()
            .await,
        "PutBucketEncryption",
    );
    let got = ok(
        c.get_bucket_encryption().bucket("def").send().await,
        "GetBucketEncryption",
    );
    let rule = &got
        .server_side_encryption_configuration()
        .expect("config")
        .rules()[0];
    let by_default = rule
        .apply_server_side_encryption_by_default()
        .expect("default");
    assert_eq!(by_default.sse_algorithm(), &Sse::AwsKms);
    assert_eq!(by_default.kms_master_key_id(), Some(KMS_KEY_NAME));

    put(&c, "def", "no-header", b"secret").await;
    assert_eq!(head_sse(&c, "def", "no-header").await, Some(Sse::AwsKms));
    assert_eq!(get(&c, "def", "no-header").await, b"secret");
    put_sse(&c, "def", "s3-header", b"secret", &Mode::S3).await;
    assert_eq!(head_sse(&c, "def", "s3-header").await, Some(Sse::Aes256));
    let k = Mode::C(CustomerKey::new(4));
    put_sse(&c, "def", "c-header", b"secret", &k).await;
    assert_eq!(get_sse(&c, "def", "c-header", &k, None).await, b"secret");

    ok(
        c.delete_bucket_encryption().bucket("def").send().await,
        "DeleteBucketEncryption",
    );
    put(&c, "def", "after", b"plain").await;
    assert_eq!(head_sse(&c, "def", "after").await, None);

    // The admin CLI sets and shows the same default.
    let admin = Admin::new(&srv).await;
    let (done, out, err) = admin
        .run(&[
            "bucket",
            "encryption",
            "set",
            "site/def",
            "sse-kms",
            KMS_KEY_NAME,
        ])
        .await;
    assert!(done, "encryption set: {err}");
    assert!(out.contains("sse-kms"), "{out}");
    let (done, out, err) = admin
        .run(&["bucket", "encryption", "info", "site/def"])
        .await;
    assert!(done, "encryption info: {err}");
    let info: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(info["algorithm"], "sse-kms");
    assert_eq!(info["key_id"], KMS_KEY_NAME);
    put(&c, "def", "cli-default", b"secret").await;
    assert_eq!(head_sse(&c, "def", "cli-default").await, Some(Sse::AwsKms));
    let (done, out, err) = admin
        .run(&["bucket", "encryption", "clear", "site/def"])
        .await;
    assert!(done, "encryption clear: {err}");
    assert!(out.contains("\"none\""), "{out}");
    let (done, _, err) = admin
        .run(&["bucket", "encryption", "set", "site/nope", "sse-s3"])
        .await;
    assert!(!done, "set on a missing bucket must fail");
    assert!(err.contains("NoSuchBucket"), "{err}");

    // Auto-encryption: SSE-S3 for writes without headers; headers still win.
    let auto = start(true).await;
    let c = auto.client();
    create_bucket(&c, "auto").await;
    put(&c, "auto", "plain", b"secret").await;
    assert_eq!(head_sse(&c, "auto", "plain").await, Some(Sse::Aes256));
    assert_eq!(get(&c, "auto", "plain").await, b"secret");
    put_sse(&c, "auto", "kms", b"secret", &Mode::Kms).await;
    assert_eq!(head_sse(&c, "auto", "kms").await, Some(Sse::AwsKms));
    put_sse(&c, "auto", "c", b"secret", &k).await;
    assert_eq!(head_sse_c(&c, "auto", "c", &k).await, None);
}

async fn head_sse_c(c: &Client, bucket: &str, key: &str, mode: &Mode) -> Option<Sse> {
    let h = ok(
        with_read_key!(c.head_object().bucket(bucket).key(key), mode)
            .send()
            .await,
        "HEAD SSE-C",
    );
    assert_eq!(h.sse_customer_algorithm(), Some("AES256"));
    h.server_side_encryption().cloned()
}

/// Every file under the drives.
fn all_files(drives: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = drives.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// Files under the drives that contain `needle`.
fn files_containing(drives: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    all_files(drives)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// `len` bytes of `marker` repeated: recognisable anywhere a shard or record holds a piece.
fn pattern(marker: &str, len: usize) -> Vec<u8> {
    marker.bytes().cycle().take(len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_reaches_any_drive_file() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "secret").await;
    create_bucket(&c, "open").await;
    let secret_marker = "CAIRN-SECRET-CANARY-7f3a9c";
    let open_marker = "CAIRN-OPEN-CANARY-51d2e8";
    for (name, mode) in Mode::all() {
        // Small (inlined in the metadata store) and large (shard files).
        for size in [4 * KIB, 3 * MIB] {
            let data = pattern(secret_marker, size);
            put_sse(&c, "secret", &format!("{name}-{size}"), &data, &mode).await;
        }
    }
    for size in [4 * KIB, 3 * MIB] {
        put(
            &c,
            "open",
            &format!("plain-{size}"),
            &pattern(open_marker, size),
        )
        .await;
    }
    let drives = srv.drives().to_vec();
    assert!(
        all_files(&drives).len() > 4,
        "the drives hold no files at all"
    );
    let leaked = files_containing(&drives, secret_marker.as_bytes());
    assert!(leaked.is_empty(), "plaintext found in {leaked:?}");
    // The same search finds the unencrypted objects, so it is able to fail.
    let found = files_containing(&drives, open_marker.as_bytes());
    assert!(
        found.iter().any(|p| p.to_string_lossy().contains("part.")),
        "unencrypted shard files not found by the search: {found:?}"
    );
    assert!(
        found.iter().any(|p| !p.to_string_lossy().contains("part.")),
        "unencrypted inlined object not found in the metadata files: {found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_heals_or_fails_never_wrong_bytes() {
    let srv = start(false).await;
    let c = srv.client();
    create_bucket(&c, "tamper").await;
    let data = random_bytes(2 * MIB, 77);
    put_sse(&c, "tamper", "obj", &data, &Mode::S3).await;
    let files: Vec<PathBuf> = srv
        .drives()
        .iter()
        .flat_map(|d| find_part_files(d))
        .collect();
    assert_eq!(files.len(), 4, "one shard file per drive: {files:?}");
    // One damaged shard: parity repairs it and the plaintext comes back intact.
    flip_bytes_in_middle(&files[0], 8);
    let got = get_sse(&c, "tamper", "obj", &Mode::S3, None).await;
    assert_bytes_eq(&got, &data, "one shard tampered");
    // Every shard damaged: the read fails; it never returns other bytes.
    for f in &files {
        flip_bytes_in_middle(f, 8);
    }
    let r = c.get_object().bucket("tamper").key("obj").send().await;
    match r {
        Err(_) => {}
        Ok(out) => match out.body.collect().await {
            Err(_) => {}
            Ok(b) => assert_eq!(
                b.into_bytes().as_ref(),
                data.as_slice(),
                "a tampered object returned wrong bytes"
            ),
        },
    }
}

/// `cairn admin ...` against `srv` with a fresh alias `site`; returns (success, stdout, stderr).
struct Admin {
    _config: tempfile::TempDir,
    dir: String,
}

impl Admin {
    async fn new(srv: &Server) -> Admin {
        let config = tempfile::tempdir().unwrap();
        let dir = config.path().to_str().unwrap().to_string();
        let a = Admin {
            _config: config,
            dir,
        };
        let (ok, _, err) = a
            .run(&[
                "alias",
                "set",
                "site",
                &srv.endpoint(),
                srv.access_key(),
                srv.secret_key(),
            ])
            .await;
        assert!(ok, "alias set: {err}");
        a
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["admin".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let (st, out, err) = run_cairn(
            &all,
            &[("CAIRN_CONFIG_DIR", self.dir.as_str())],
            Duration::from_secs(30),
        )
        .await;
        (st.success(), out, err)
    }
}

async fn get_kms(c: &Client, key: &str) -> Result<Vec<u8>, (Option<u16>, Option<String>)> {
    match c.get_object().bucket("vault").key(key).send().await {
        Ok(r) => Ok(body_of(r).await),
        Err(e) => Err((err_status(&e), err_code(&e))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_keys_give_secure_erasure() {
    let srv = Server::start_with(ServerOptions::new(4).env(
        "CAIRN_KMS_MASTER_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ))
    .await;
    let c = srv.client();
    create_bucket(&c, "vault").await;
    let admin = Admin::new(&srv).await;
    for k in ["k1", "k2"] {
        let (done, out, err) = admin.run(&["kms", "key", "create", "site", k]).await;
        assert!(done, "create {k}: {err}");
        assert!(out.contains("enabled"), "{out}");
    }
    let (done, _, err) = admin.run(&["kms", "key", "create", "site", "k1"]).await;
    assert!(
        !done && err.contains("already exists"),
        "duplicate create: {err}"
    );
    let (done, out, _) = admin.run(&["kms", "key", "list", "site"]).await;
    assert!(done && out.contains("k1") && out.contains("k2"), "{out}");

    let small = random_bytes(1000, 1);
    let large = random_bytes(3 * MIB, 2);
    for (key, data, kms_key) in [
        ("small", &small, "k1"),
        ("large", &large, "k1"),
        ("other", &small, "k2"),
    ] {
        ok(put_kms(&c, "vault", key, data, kms_key).await, key);
    }
    assert_eq!(get_kms(&c, "large").await.ok(), Some(large.clone()));

    let (ok_, out, err) = admin.run(&["kms", "key", "disable", "site", "k1"]).await;
    assert!(ok_ && out.contains("disabled"), "disable: {out} {err}");
    let disabled = (Some(400), Some("KMS.DisabledException".to_string()));
    assert_eq!(get_kms(&c, "small").await.err(), Some(disabled.clone()));
    assert_eq!(get_kms(&c, "large").await.err(), Some(disabled.clone()));
    assert_eq!(
        get_kms(&c, "other").await.ok(),
        Some(small.clone()),
        "k2 unaffected"
    );
    let put = put_kms(&c, "vault", "new", b"x", "k1").await;
    assert_s3_err(
        put,
        400,
        Some("KMS.DisabledException"),
        "PUT under a disabled key",
    );

    let (ok_, _, err) = admin.run(&["kms", "key", "enable", "site", "k1"]).await;
    assert!(ok_, "enable: {err}");
    assert_eq!(get_kms(&c, "small").await.ok(), Some(small.clone()));
    assert_eq!(get_kms(&c, "large").await.ok(), Some(large.clone()));

    let (ok_, out, err) = admin.run(&["kms", "key", "delete", "site", "k1"]).await;
    assert!(ok_ && out.contains("deleted"), "delete: {out} {err}");
    let gone = (Some(400), Some("KMS.KMSInvalidStateException".to_string()));
    assert_eq!(get_kms(&c, "small").await.err(), Some(gone.clone()));
    assert_eq!(get_kms(&c, "large").await.err(), Some(gone.clone()));
    let (ok_, _, err) = admin.run(&["kms", "key", "enable", "site", "k1"]).await;
    assert!(
        !ok_ && err.contains("deleted"),
        "enable after delete: {err}"
    );
    assert_eq!(
        get_kms(&c, "small").await.err(),
        Some(gone),
        "deleted for good"
    );
    let (_, out, _) = admin.run(&["kms", "key", "status", "site", "k1"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(
        get_kms(&c, "other").await.ok(),
        Some(small),
        "k2 still readable"
    );
}
