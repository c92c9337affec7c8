//! Encryption at rest for objects: creating and reopening an object's sealed key, sealing an
//! upload body before it is erasure-coded, and opening just the packages a read touches.
//!
//! An encrypted version keeps the client's view in `ObjectVersion` (`size`, `etag`, each part's
//! plaintext `size`) and its [`SseInfo`] in field `sse`; what the drives hold per part is the sealed
//! package stream of that part ([`SealedLayout`], which the object layer is built with). Single-part objects use stream
//! [`SINGLE_PART`]; each part of a multipart object uses its part number, so every part has its own
//! derived key.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use md5::{Digest as _, Md5};
use rand::RngCore;

use cairn_proto::meta::{KeyValue, ObjectVersion, PartInfo, SseInfo};

use super::package::{Decryptor, Encryptor, SINGLE_PART};
use super::registry;
use super::stream::{self, StreamError};
use super::{
    multipart_ranges, package_range, sealed_size, Backend, Context, CustomerKey, KeyBinding, Kms,
    ObjectKey, PartRange, SealedKey, SseError, SseKind, SseResult, StaticKms, StreamKey,
};
use crate::object::stage::{StoredForm, StoredLayout};
use crate::object::write::WriteOutcome;
use crate::object::{GetHandle, ObjectError, ObjectResult};

/// Bytes of a multipart part's stream-key salt.
const PART_SALT_LEN: usize = 16;

/// Context entry naming the object a data key belongs to, so the KMS binds it to that object too.
const OBJECT_CONTEXT_KEY: &str = "cairn:object";

/// What a node is given to encrypt with.
#[derive(Clone, Default)]
pub struct SseConfig {
    /// The KMS for SSE-S3 and SSE-KMS; without one only SSE-C is served.
    pub kms: Option<Arc<dyn Kms>>,
    /// `CAIRN_KMS_AUTO_ENCRYPTION=on`: SSE-S3 for every write that asks for no encryption.
    pub auto_encryption: bool,
    /// Master key (`CAIRN_KMS_MASTER_KEY`) wrapping the control plane's KMS key registry;
    /// `None` leaves the registry off (creating or using a registry key names the setting).
    pub master_key: Option<Arc<registry::MasterKey>>,
    /// The root secret key, whose derived key wrapped registry keys in earlier versions: such
    /// keys are re-wrapped under `master_key` when first used (never served by it).
    pub legacy_root_secret: Option<zeroize::Zeroizing<String>>,
    /// `CAIRN_INSECURE_SSE_C=on`: accept SSE-C keys over plain HTTP (a test rig or a node behind
    /// a TLS-terminating proxy). Off, SSE-C needs TLS, as on AWS and MinIO.
    pub insecure_sse_c: bool,
}

/// `on` encrypts every object written without SSE headers with SSE-S3.
pub const AUTO_ENCRYPTION_ENV: &str = "CAIRN_KMS_AUTO_ENCRYPTION";
/// `on` serves SSE-C requests that arrive over plain HTTP.
pub const INSECURE_SSE_C_ENV: &str = "CAIRN_INSECURE_SSE_C";

/// An `on`/`off` switch from the environment (unset or empty: off).
fn switch(name: &str) -> SseResult<bool> {
    match std::env::var(name) {
        Ok(v) if v.eq_ignore_ascii_case("on") => Ok(true),
        Ok(v) if v.eq_ignore_ascii_case("off") || v.is_empty() => Ok(false),
        Ok(_) => Err(SseError::KmsConfig(format!("{name} must be 'on' or 'off'"))),
        Err(_) => Ok(false),
    }
}

impl SseConfig {
    /// The server's settings from `CAIRN_KMS_KES_*` (a KES server) or else `CAIRN_KMS_SECRET_KEY`,
    /// `CAIRN_KMS_AUTO_ENCRYPTION`, `CAIRN_KMS_MASTER_KEY` (no master key: no registry) and
    /// `CAIRN_INSECURE_SSE_C`; `rng` draws the static KMS's data keys. `root_secret` only lets
    /// registry keys of earlier versions be re-wrapped. `certs_ca` is the PEM the certs directory
    /// trusts (`CAs/`), with which the KES client verifies its server unless
    /// `CAIRN_KMS_KES_CAPATH` names another CA.
    pub fn from_env(
        rng: Box<dyn RngCore + Send>,
        root_secret: &str,
        certs_ca: Option<&[u8]>,
    ) -> SseResult<Self> {
        let kms = match super::kes::client::KesClient::from_env(certs_ca)? {
            Some(kes) => {
                if std::env::var_os(super::kms::STATIC_KEY_ENV).is_some() {
                    tracing::warn!(
                        "{} is ignored: {} is set and KES serves every key",
                        super::kms::STATIC_KEY_ENV,
                        super::kes::client::ENDPOINT_ENV
                    );
                }
                tracing::info!(kes = ?kes, identity = %kes.identity(), "KMS: KES client");
                Some(Arc::new(kes) as Arc<dyn Kms>)
            }
            None => StaticKms::from_env(rng)?.map(|k| Arc::new(k) as Arc<dyn Kms>),
        };
        let auto_encryption = switch(AUTO_ENCRYPTION_ENV)?;
        if auto_encryption && kms.is_none() {
            return Err(SseError::KmsConfig(format!(
                "{AUTO_ENCRYPTION_ENV}=on needs a KMS ({} or {})",
                super::kms::STATIC_KEY_ENV,
                super::kes::client::ENDPOINT_ENV
            )));
        }
        let master_key = registry::MasterKey::from_env()?;
        match &master_key {
            Some(m) => tracing::info!(master_key = %m.name, "KMS key registry on"),
            None => tracing::warn!(
                "{} is not set: the KMS key registry is off (creating registry keys, and SSE-S3 or \
                 SSE-KMS without {} or {}, are refused)",
                registry::MASTER_KEY_ENV,
                super::kms::STATIC_KEY_ENV,
                super::kes::client::ENDPOINT_ENV
            ),
        }
        let insecure_sse_c = switch(INSECURE_SSE_C_ENV)?;
        if insecure_sse_c {
            tracing::warn!(
                "{INSECURE_SSE_C_ENV}=on: SSE-C customer keys are accepted over plain HTTP"
            );
        }
        Ok(Self {
            kms,
            auto_encryption,
            master_key: master_key.map(Arc::new),
            legacy_root_secret: Some(zeroize::Zeroizing::new(root_secret.to_string())),
            insecure_sse_c,
        })
    }
}

/// The encryption a write asks for.
pub enum Mode {
    S3,
    Kms {
        /// `None`: the KMS's default key.
        key_id: Option<String>,
        context: Context,
    },
    C(CustomerKey),
}

/// The SSE type recorded in `info` (the codes `SealedKey` writes).
pub fn kind_of(info: &SseInfo) -> SseResult<SseKind> {
    u8::try_from(info.kind)
        .ok()
        .and_then(SseKind::from_code)
        .ok_or(SseError::MalformedSealedKey("unknown SSE type"))
}

fn code(kind: SseKind) -> u32 {
    u32::from(kind.code())
}

/// Makes and reopens object keys; holds the KMS and the handed-in RNG.
pub struct Keyring {
    kms: Option<Arc<dyn Kms>>,
    /// The control plane's key registry (also part of `kms`), for `kms key create`.
    pub registry: Option<Arc<registry::RegistryKms>>,
    pub auto_encryption: bool,
    /// See [`SseConfig::insecure_sse_c`].
    pub insecure_sse_c: bool,
    rng: Mutex<Box<dyn RngCore + Send>>,
    /// KMS calls (data key generation and decryption) that failed, for the metrics.
    pub kms_errors: std::sync::atomic::AtomicU64,
}

impl Keyring {
    /// `registry_rng` draws registry keys and data keys, `rng` object keys.
    pub fn new(
        config: SseConfig,
        catalog: Arc<crate::catalog::Catalog>,
        registry_rng: Box<dyn RngCore + Send>,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let legacy = config.legacy_root_secret.as_deref().map(String::as_str);
        let registry = config.master_key.map(|m| {
            Arc::new(registry::RegistryKms::new(
                catalog,
                m.key.clone(),
                legacy,
                registry_rng,
            ))
        });
        let kms: Option<Arc<dyn Kms>> = (config.kms.is_some() || registry.is_some()).then(|| {
            Arc::new(registry::SiteKms {
                external: config.kms,
                registry: registry.clone(),
            }) as Arc<dyn Kms>
        });
        Self {
            kms,
            registry,
            auto_encryption: config.auto_encryption,
            insecure_sse_c: config.insecure_sse_c,
            rng: Mutex::new(rng),
            kms_errors: Default::default(),
        }
    }

    fn kms_failed(&self) {
        self.kms_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The node's KMS (configured backend plus registry), for serving it over KES.
    pub fn site_kms(&self) -> Option<Arc<dyn Kms>> {
        self.kms.clone()
    }

    fn kms(&self) -> SseResult<&Arc<dyn Kms>> {
        self.kms.as_ref().ok_or_else(registry::master_key_missing)
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut **rng)
    }

    /// A fresh salt for one upload of a multipart part ([`SealedWrite::part`]).
    pub fn part_salt(&self) -> Vec<u8> {
        let mut salt = vec![0u8; PART_SALT_LEN];
        self.with_rng(|r| r.fill_bytes(&mut salt));
        salt
    }

    /// A fresh object key for `bucket/object` and the record that reopens it.
    pub async fn create(
        &self,
        bucket: &str,
        object: &str,
        mode: &Mode,
        multipart: bool,
    ) -> SseResult<(SseInfo, ObjectKey)> {
        let key = self.with_rng(|r| ObjectKey::generate(r));
        let mut info = SseInfo {
            multipart,
            ..Default::default()
        };
        match mode {
            Mode::S3 | Mode::Kms { .. } => {
                let kms = self.kms()?;
                let (key_id, user_context, kind) = match mode {
                    Mode::Kms { key_id, context } => (
                        key_id
                            .clone()
                            .unwrap_or_else(|| kms.default_key_id().to_string()),
                        context.clone(),
                        SseKind::Kms,
                    ),
                    _ => (
                        kms.default_key_id().to_string(),
                        Context::new(),
                        SseKind::S3,
                    ),
                };
                let dk = kms
                    .generate_data_key(&key_id, &kms_context(bucket, object, &user_context))
                    .await
                    .inspect_err(|_| self.kms_failed())?;
                let binding = binding(kind, bucket, object, &key_id, &user_context);
                let sealed =
                    self.with_rng(|r| SealedKey::seal(&key, &dk.plaintext, &binding, r))?;
                info.kind = code(kind);
                info.sealed_key = sealed.to_bytes();
                info.data_key = dk.ciphertext;
                info.context = user_context
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect();
                info.key_id = key_id;
            }
            Mode::C(ck) => {
                let binding = KeyBinding::sse_c(bucket, object);
                let sealed = self.with_rng(|r| SealedKey::seal(&key, ck.secret(), &binding, r))?;
                info.kind = code(SseKind::C);
                info.sealed_key = sealed.to_bytes();
                info.key_verifier = ck.verifier(bucket, object).to_vec();
            }
        }
        Ok((info, key))
    }

    /// Reopens the object key of `bucket/object`. SSE-C needs the customer's key (a wrong one is
    /// [`SseError::CustomerKeyMismatch`]); SSE-S3 and SSE-KMS ask the KMS, so a disabled or deleted
    /// KMS key makes the object unreadable.
    pub async fn open(
        &self,
        bucket: &str,
        object: &str,
        info: &SseInfo,
        customer: Option<&CustomerKey>,
    ) -> SseResult<ObjectKey> {
        let kind = kind_of(info)?;
        let sealed = SealedKey::from_bytes(&info.sealed_key)?;
        if kind == SseKind::C {
            let ck = check_customer_key(bucket, object, info, customer)?
                .ok_or(SseError::CustomerKeyRequired)?;
            return sealed.unseal(ck.secret(), &KeyBinding::sse_c(bucket, object));
        }
        if customer.is_some() {
            return Err(SseError::CustomerKeyNotApplicable);
        }
        let context = context_of(info);
        let secret = self
            .kms()?
            .decrypt(
                &info.key_id,
                &info.data_key,
                &kms_context(bucket, object, &context),
            )
            .await
            .inspect_err(|_| self.kms_failed())?;
        sealed.unseal(
            &secret,
            &binding(kind, bucket, object, &info.key_id, &context),
        )
    }
}

/// Checks the SSE-C key a request gave against what `info` says: `Ok(Some)` when the object is
/// SSE-C and the key fits, `Ok(None)` when neither side uses SSE-C.
pub fn check_customer_key<'a>(
    bucket: &str,
    object: &str,
    info: &SseInfo,
    customer: Option<&'a CustomerKey>,
) -> SseResult<Option<&'a CustomerKey>> {
    match (info.kind == code(SseKind::C), customer) {
        (true, Some(ck)) => ck
            .verify(bucket, object, &info.key_verifier)
            .map(|()| Some(ck)),
        (true, None) => Err(SseError::CustomerKeyRequired),
        (false, Some(_)) => Err(SseError::CustomerKeyNotApplicable),
        (false, None) => Ok(None),
    }
}

/// The client's SSE-KMS context as stored.
pub fn context_of(info: &SseInfo) -> Context {
    info.context
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

fn kms_context(bucket: &str, object: &str, user: &Context) -> Context {
    let mut c = user.clone();
    c.insert(OBJECT_CONTEXT_KEY.into(), format!("{bucket}/{object}"));
    c
}

fn binding<'a>(
    kind: SseKind,
    bucket: &'a str,
    object: &'a str,
    key_id: &'a str,
    context: &'a Context,
) -> KeyBinding<'a> {
    match kind {
        SseKind::Kms => KeyBinding::sse_kms(bucket, object, key_id, context),
        _ => KeyBinding::sse_s3(bucket, object, key_id),
    }
}

/// The stream number of a part: [`SINGLE_PART`] for a plain PUT, the part number in a multipart
/// object.
fn stream_of(info: &SseInfo, part: u32) -> u32 {
    if info.multipart {
        part
    } else {
        SINGLE_PART
    }
}

/// Where the parts of any version lie: an encrypted version's parts hold their sealed size.
pub struct SealedLayout;

impl StoredLayout for SealedLayout {
    fn stored_parts<'a>(&self, v: &'a ObjectVersion) -> Cow<'a, [PartInfo]> {
        if v.sse.is_none() {
            return Cow::Borrowed(&v.parts);
        }
        Cow::Owned(
            v.parts
                .iter()
                .map(|p| PartInfo {
                    size: sealed_size(p.size),
                    ..p.clone()
                })
                .collect(),
        )
    }
}

/// Plaintext facts an encrypted write learns once its body has been read.
#[derive(Default)]
struct Digest {
    size: u64,
    md5: [u8; 16],
    checksums: s3s::dto::Checksum,
}

/// An encrypted write in progress: the record to store and, once the body is read, the plaintext's
/// size, MD5 and checksums for the version the client sees.
#[derive(Clone)]
pub struct SealedWrite {
    pub info: SseInfo,
    /// The stream key's salt (a multipart part's; empty for a single-part write).
    salt: Vec<u8>,
    digest: Arc<Mutex<Digest>>,
}

impl std::fmt::Debug for SealedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedWrite(kind {})", self.info.kind)
    }
}

/// A body ready for the object layer.
pub type Body<E> = Pin<Box<dyn Stream<Item = Result<Bytes, StreamError<E>>> + Send>>;

impl SealedWrite {
    pub fn new(info: SseInfo) -> Self {
        Self {
            info,
            salt: Vec::new(),
            digest: Arc::default(),
        }
    }

    /// A write of one multipart part, its stream key salted with `salt` ([`Keyring::part_salt`]).
    pub fn part(info: SseInfo, salt: Vec<u8>) -> Self {
        Self {
            salt,
            ..Self::new(info)
        }
    }

    /// Seals `body` as stream `part` (its part number, or 1 for a plain PUT) under `key`, hashing
    /// the plaintext on the way with `hasher` (the client's checksums).
    pub fn seal<S, E>(
        &self,
        body: S,
        key: &ObjectKey,
        part: u32,
        mut hasher: s3s::checksum::ChecksumHasher,
    ) -> SseResult<Body<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
        E: Send + 'static,
    {
        let enc = Encryptor::new(
            StreamKey::derive_salted(key, stream_of(&self.info, part), &self.salt),
            Backend::default(),
        )?;
        let digest = self.digest.clone();
        let mut md5 = Md5::new();
        let mut size = 0u64;
        let plain = body
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .filter_map(move |item| {
                let out = match item {
                    Some(Ok(chunk)) => {
                        md5.update(&chunk);
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                        Some(Ok(chunk))
                    }
                    Some(Err(e)) => Some(Err(e)),
                    None => {
                        let mut d = digest.lock().unwrap_or_else(PoisonError::into_inner);
                        d.size = size;
                        d.md5 = std::mem::take(&mut md5).finalize().into();
                        d.checksums = std::mem::take(&mut hasher).finalize();
                        None
                    }
                };
                futures::future::ready(out)
            });
        Ok(Box::pin(stream::encrypt(Box::pin(plain), enc)))
    }

    /// What the write looks like to the client's checks: the plaintext's size, MD5 and checksums.
    pub fn plain_outcome<C>(&self, stored: &WriteOutcome<C>) -> WriteOutcome<s3s::dto::Checksum> {
        let d = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
        WriteOutcome {
            size: d.size,
            md5: d.md5,
            checksums: d.checksums.clone(),
            ok: stored.ok.clone(),
            inline: None,
        }
    }

    /// The ETag AWS shows: the plaintext MD5 for SSE-S3 / SSE-KMS; for SSE-C an opaque one (the
    /// MD5 of the ciphertext, which says nothing about the plaintext).
    fn etag(&self, stored_etag: &str) -> String {
        if self.info.kind == code(SseKind::C) {
            stored_etag.to_string()
        } else {
            let d = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
            hex::encode(d.md5)
        }
    }
}

impl StoredForm for SealedWrite {
    /// Whether the MD5 of the stored (sealed) bytes is needed: only SSE-C's opaque ETag is made of
    /// it; the others show the plaintext's.
    fn needs_stored_md5(&self) -> bool {
        self.info.kind == code(SseKind::C)
    }

    /// Turns a just-written single-part version into the client's view and records the key.
    fn apply_version(&self, v: &mut ObjectVersion) {
        let size = self
            .digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size;
        v.etag = self.etag(&v.etag);
        v.size = size;
        for p in &mut v.parts {
            p.size = size;
            p.etag = v.etag.clone();
        }
        v.sse = Some(self.info.clone());
    }

    /// Turns a just-written part into the client's view.
    fn apply_part(&self, p: &mut PartInfo) {
        p.etag = self.etag(&p.etag);
        p.sse_salt = self.salt.clone();
        p.size = self
            .digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size;
    }

    fn upload_record(&self) -> SseInfo {
        self.info.clone()
    }
}

/// Opens plaintext bytes `start..end` of an encrypted version: reads only the packages they touch
/// (of each part they touch) and checks every one.
pub fn open_range(
    handle: GetHandle,
    key: &ObjectKey,
    start: u64,
    end: u64,
) -> SseResult<impl Stream<Item = ObjectResult<Bytes>> + Send> {
    let v = &handle.info.version;
    let info = v.sse.clone().unwrap_or_default();
    let parts: Vec<(u32, u64)> = v
        .parts
        .iter()
        .map(|p| (stream_of(&info, p.number), p.size))
        .collect();
    let len = end.saturating_sub(start);
    let mut ranges = multipart_ranges(&parts, start, len)?;
    if ranges.is_empty() {
        // An empty read of an empty object still opens its one empty package: authenticated too.
        if let Some(&(part, 0)) = parts.first().filter(|_| v.size == 0) {
            ranges.push(PartRange {
                index: 0,
                part,
                stream_offset: 0,
                range: package_range(0, 0, 0)?,
            });
        }
    }
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Ok(futures::stream::empty().boxed());
    };
    let cipher_start = first.stream_offset + first.range.cipher.start;
    let cipher_end = last.stream_offset + last.range.cipher.end;
    let mut opened = VecDeque::with_capacity(ranges.len());
    for r in &ranges {
        let salt = v.parts.get(r.index).map_or(&[][..], |p| &p.sse_salt[..]);
        let dec = Decryptor::new(
            StreamKey::derive_salted(key, r.part, salt),
            Backend::default(),
            &r.range,
        )?;
        opened.push_back((dec, r.range.cipher.end - r.range.cipher.start));
    }
    let inner = Box::pin(handle.stream(cipher_start, cipher_end));
    Ok(PartsDecryptor {
        opened,
        ready: VecDeque::new(),
    }
    .run(inner)
    .boxed())
}

/// Feeds one contiguous ciphertext read to the decryptor of each part it spans, in order.
struct PartsDecryptor {
    /// Each touched part's decryptor and the ciphertext bytes it still expects.
    opened: VecDeque<(Decryptor, u64)>,
    ready: VecDeque<Bytes>,
}

impl PartsDecryptor {
    /// Takes the chunk by value: converting a uniquely owned `Bytes` to `BytesMut` is free, and
    /// lets each decryptor open its packages in place.
    fn feed(&mut self, chunk: Bytes) -> SseResult<()> {
        let mut chunk = BytesMut::from(chunk);
        while !chunk.is_empty() {
            let Some((dec, left)) = self.opened.front_mut() else {
                return Err(SseError::TrailingData);
            };
            let take = (*left).min(chunk.len() as u64) as usize;
            self.ready.extend(dec.update(chunk.split_to(take))?);
            *left -= take as u64;
            if *left == 0 {
                if let Some((dec, _)) = self.opened.pop_front() {
                    dec.finish()?;
                }
            }
        }
        Ok(())
    }

    fn run<S>(self, inner: S) -> impl Stream<Item = ObjectResult<Bytes>> + Send
    where
        S: Stream<Item = ObjectResult<Bytes>> + Unpin + Send,
    {
        futures::stream::unfold(Some((self, inner)), |state| async move {
            let (mut me, mut inner) = state?;
            loop {
                if let Some(b) = me.ready.pop_front() {
                    return Some((Ok(b), Some((me, inner))));
                }
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = me.feed(chunk) {
                            return Some((Err(ObjectError::Stage(Box::new(e))), None));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None if me.opened.is_empty() => return None,
                    None => {
                        return Some((Err(ObjectError::Stage(Box::new(SseError::Truncated))), None))
                    }
                }
            }
        })
    }
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;
