//! The [`S3Access`] s3s calls before every S3 operation (anonymous requests included): it maps
//! the operation to the permissions it needs and decides them with the [`Authorizer`]. What s3s
//! has yet to parse (a copy's source, a POST form) is decided in the operation's hook, the keys of
//! a DeleteObjects one by one by its handler ([`KeyCheck`]); a peer site's replication identity
//! may only write replicas.

use std::sync::Arc;

use hyper::HeaderMap;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{CopyObjectInput, CopySource, PostObjectInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{s3_error, S3Request, S3Result};

use super::condition_keys::{keys_push, object_keys, query_pairs, request_keys, session_token};
use super::{Authorizer, Denied, Grants, Signer};
use crate::auth::operation::{copy_source_read, delete_key, needed, Needed, OpRequest};
use crate::auth::ConnInfo;
use crate::object::ObjectLayer;

/// The [`S3Access`] s3s calls before every S3 operation (anonymous requests included).
pub struct S3Authorizer {
    pub authorizer: Arc<Authorizer>,
    /// Reads the tags of the object a request names, for `s3:ExistingObjectTag/<key>`.
    pub objects: Arc<ObjectLayer>,
}

/// Operations on an existing object whose policies may test its tags (`s3:ExistingObjectTag`).
const EXISTING_TAG_OPS: [&str; 12] = [
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectRetention",
    "PutObjectRetention",
    "GetObjectLegalHold",
    "PutObjectLegalHold",
];

const EXISTING_TAG: &str = "s3:existingobjecttag/";

/// Left on a request whose decision tested the named object's tags as this site holds them: a
/// read of a version this site lacks is then not proxied to a peer, whose tags the decision never
/// saw (a `Deny` on a tag would not have matched here).
#[derive(Debug, Clone, Copy)]
pub struct DecidedOnTags;

const COPY_SOURCE_KEY: &str = "s3:x-amz-copy-source";

/// Operations whose permissions depend on what s3s parses from the request (the copy source, the
/// key and fields of a POST form): `check` resolves the caller and leaves a [`Pending`]; the
/// operation's hook decides every permission on the parsed input, the one the handler then acts
/// on.
const PARSED_OPS: [&str; 3] = ["CopyObject", "UploadPartCopy", "PostObject"];

impl S3Authorizer {
    /// AWS answers a request naming a bucket that does not exist with `NoSuchBucket`, whoever
    /// asks: no bucket policy can grant on it, so a policy refusal would hide the answer every
    /// caller gets from AWS (and from `CreateBucket`). `CreateBucket` itself names a bucket that
    /// does not exist yet, and keeps its refusal.
    fn no_such_bucket(&self, op: &str, bucket: Option<&str>, e: &Denied) -> Option<s3s::S3Error> {
        let b = bucket?;
        let missing = op != "CreateBucket"
            && matches!(e, Denied::Policy { .. })
            && self.authorizer.iam.state().bucket(b).is_none();
        missing.then(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }
}

#[async_trait::async_trait]
impl S3Access for S3Authorizer {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let client = cx.extensions_mut().get::<ConnInfo>().copied();
        let op = cx.s3_op().name();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(&**bucket), None),
            S3Path::Object { bucket, key } => (Some(&**bucket), Some(&**key)),
        };
        crate::telemetry::note(|n| n.operation = Some(op.to_owned()));
        crate::telemetry::note_detail(|n| {
            n.bucket = bucket.map(str::to_owned);
            n.key = key.map(str::to_owned);
        });
        let query = query_pairs(cx.uri());
        // Any version id, `null` included, names a version: the `...Version` actions apply.
        let versioned = query.iter().any(|(k, _)| k == "versionId");
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        // A peer site's replication identity is no IAM principal: replica writes only.
        if let Some(peer) = access_key
            .as_deref()
            .and_then(|k| self.authorizer.iam.site_peer(k))
        {
            if peer_may(op, cx.headers()) {
                return Ok(());
            }
            tracing::info!(op, peer = %peer, "access denied: a site's replication identity writes replicas and reads proxied objects only");
            crate::telemetry::note(|n| {
                n.denied = true;
                n.decision = Some(format!(
                    "the replication identity of site {peer} writes replicas and reads proxied objects only"
                ));
            });
            return Err(s3_error!(AccessDenied, "Access Denied."));
        }
        let token = session_token(cx.headers(), &query);
        let signer = access_key.as_deref().map(|k| Signer {
            access_key: k,
            session_token: token.as_deref(),
        });
        let req = OpRequest {
            op,
            bucket,
            key,
            versioned,
            headers: cx.headers(),
        };
        let mut keys = request_keys(
            cx.headers(),
            cx.uri(),
            client,
            op,
            self.authorizer.clock.now(),
        );
        let mut tags_read = false;
        let result = match self.authorizer.grants(signer) {
            Err(e) => Err(e),
            Ok(grants) => {
                if let (Some(b), Some(k), true) = (bucket, key, EXISTING_TAG_OPS.contains(&op)) {
                    if self.authorizer.mentions(&grants, bucket, EXISTING_TAG) {
                        tags_read = true;
                        let version = query
                            .iter()
                            .find(|(k, _)| k == "versionId")
                            .map(|(_, v)| v.as_str());
                        keys.extend(existing_tags(&self.objects, b, k, version).await);
                    }
                }
                match needed(&req) {
                    None if access_key
                        .as_deref()
                        .is_some_and(|k| self.authorizer.iam.is_root(k)) =>
                    {
                        Ok((Vec::new(), grants))
                    }
                    None => Err(Denied::Unmapped(op.to_owned())),
                    // Decided in the operation's hook, with what s3s parsed.
                    Some(n) if PARSED_OPS.contains(&op) => Ok((as_pairs(n), grants)),
                    Some(n) => {
                        let n = as_pairs(n);
                        self.authorizer
                            .decide(&grants, &n, &keys)
                            .map(|()| (n, grants))
                    }
                }
            }
        };
        let (granted, grants) = result.map_err(|e| {
            tracing::info!(op, access_key = access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
            self.no_such_bucket(op, bucket, &e)
                .unwrap_or_else(|| e.to_s3())
        })?;
        let (parsed_op, per_key) = (PARSED_OPS.contains(&op), op == "DeleteObjects");
        // The permissions of a parsed operation are not decided yet: nothing is granted here.
        let bypass_granted = !parsed_op
            && granted
                .iter()
                .any(|(a, _)| *a == "s3:BypassGovernanceRetention");
        if bypass_granted {
            cx.extensions_mut().insert(GovernanceBypass);
        }
        if tags_read {
            cx.extensions_mut().insert(DecidedOnTags);
        }
        if parsed_op {
            cx.extensions_mut().insert(Pending(Arc::new(PendingCheck {
                authorizer: self.authorizer.clone(),
                needed: granted,
                grants,
                access_key,
                keys,
            })));
        } else if per_key {
            let check = KeyCheck {
                authorizer: self.authorizer.clone(),
                access_key,
                session_token: token,
                keys,
            };
            cx.extensions_mut().insert(Arc::new(check));
        }
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        pending(&req.extensions, "CopyObject")?
            .copy_source(&self.objects, &req.input.copy_source)
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        pending(&req.extensions, "UploadPartCopy")?
            .copy_source(&self.objects, &req.input.copy_source)
            .await
    }

    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        let p = pending(&req.extensions, "PostObject")?;
        let i = &req.input;
        // The form fields as the headers of the equivalent PUT: one mapping for both.
        let until = i.object_lock_retain_until_date.as_ref().map(|t| {
            let mut buf = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = t.format(s3s::dto::TimestampFormat::DateTime, &mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        let as_str = |v: Option<&str>| v.map(str::to_owned);
        let fields_given = [
            (
                "x-amz-object-lock-mode",
                as_str(i.object_lock_mode.as_ref().map(|m| m.as_str())),
            ),
            ("x-amz-object-lock-retain-until-date", until),
            (
                "x-amz-object-lock-legal-hold",
                as_str(i.object_lock_legal_hold_status.as_ref().map(|h| h.as_str())),
            ),
            ("x-amz-tagging", i.tagging.clone()),
            (
                "x-amz-server-side-encryption",
                as_str(i.server_side_encryption.as_ref().map(|v| v.as_str())),
            ),
            (
                "x-amz-server-side-encryption-aws-kms-key-id",
                i.ssekms_key_id.clone(),
            ),
            (
                "x-amz-server-side-encryption-customer-algorithm",
                i.sse_customer_algorithm.clone(),
            ),
            ("x-amz-acl", as_str(i.acl.as_ref().map(|v| v.as_str()))),
            (
                "x-amz-storage-class",
                as_str(i.storage_class.as_ref().map(|v| v.as_str())),
            ),
        ];
        let mut fields = HeaderMap::new();
        for (name, value) in fields_given {
            if let Some(v) = value {
                // A field no header could carry is refused, not left out of the decision.
                let v = hyper::header::HeaderValue::from_str(&v)
                    .map_err(|_| s3_error!(InvalidArgument, "invalid form field {name}"))?;
                fields.insert(name, v);
            }
        }
        let put = OpRequest {
            op: "PutObject",
            bucket: Some(&i.bucket),
            key: Some(&i.key),
            versioned: false,
            headers: &fields,
        };
        let n = needed(&put).map(as_pairs).unwrap_or_default();
        let mut keys = p.keys.clone();
        keys.extend(object_keys(&fields, p.authorizer.clock.now()));
        p.decide("PostObject", &n, &keys)
    }
}

/// The `s3:ExistingObjectTag/<key>` condition keys of an object version. A missing object has
/// no tags: the handler reports `NoSuchKey` if the request is allowed.
async fn existing_tags(
    objects: &ObjectLayer,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Vec<(String, Vec<String>)> {
    match objects.head_object(bucket, key, version).await {
        Ok(info) => info
            .version
            .tags
            .iter()
            .map(|t| {
                (
                    format!("s3:ExistingObjectTag/{}", t.key),
                    vec![t.value.clone()],
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn as_pairs(n: Vec<Needed>) -> Vec<(&'static str, Option<String>)> {
    n.into_iter()
        .map(|Needed { action, resource }| (action, Some(resource)))
        .collect()
}

/// The [`Pending`] `check` left for `op`; none means `check` did not run for this request, so
/// nothing is allowed.
fn pending<'a>(ext: &'a hyper::http::Extensions, op: &str) -> S3Result<&'a PendingCheck> {
    ext.get::<Pending>().map(|p| &*p.0).ok_or_else(|| {
        tracing::warn!(op, "no access check ran before the operation: denied");
        s3_error!(AccessDenied, "Access Denied.")
    })
}

/// Left in a request's extensions by `check` for the operations of [`PARSED_OPS`].
#[derive(Clone)]
struct Pending(Arc<PendingCheck>);

struct PendingCheck {
    authorizer: Arc<Authorizer>,
    /// What the request's path and headers need (the destination of a copy).
    needed: Vec<(&'static str, Option<String>)>,
    grants: Grants,
    access_key: Option<String>,
    keys: Vec<(String, Vec<String>)>,
}

impl PendingCheck {
    fn decide(
        &self,
        op: &str,
        needed: &[(&str, Option<String>)],
        keys: &[(String, Vec<String>)],
    ) -> S3Result<()> {
        self.authorizer
            .decide(&self.grants, needed, keys)
            .map_err(|e| {
                tracing::info!(op, access_key = self.access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
                e.to_s3()
            })
    }

    /// A copy: its destination, and the read of its source as s3s parsed it (what the handler
    /// reads), decided with the source bucket's policy; `s3:x-amz-copy-source` is the parsed
    /// source too (`bucket/key[?versionId=...]`, decoded), so no encoding of the header evades
    /// a condition on it. The read is a `GetObject` of the source, so a policy that tests the
    /// source's tags (`s3:ExistingObjectTag/<key>`) sees them, as it would on a GET.
    async fn copy_source(&self, objects: &ObjectLayer, src: &CopySource) -> S3Result<()> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = src
        else {
            tracing::info!(op = "copy", "access point copy source: denied");
            return Err(s3_error!(AccessDenied, "Access Denied."));
        };
        let read = as_pairs(vec![copy_source_read(bucket, key, version_id.is_some())]);
        let mut source = format!("{bucket}/{key}");
        if let Some(v) = version_id {
            source = format!("{source}?versionId={v}");
        }
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(COPY_SOURCE_KEY))
            .cloned()
            .collect();
        keys_push(&mut keys, COPY_SOURCE_KEY, &source);
        self.decide("copy", &self.needed, &keys)?;
        if self
            .authorizer
            .mentions(&self.grants, Some(bucket), EXISTING_TAG)
        {
            keys.extend(existing_tags(objects, bucket, key, version_id.as_deref()).await);
        }
        self.decide("copy", &read, &keys)
    }
}

/// Left in a request's extensions when the caller was allowed `s3:BypassGovernanceRetention`
/// (asked for only when the request carries the bypass header).
#[derive(Debug, Clone, Copy)]
pub struct GovernanceBypass;

/// Authorizes the keys of a DeleteObjects request one by one, as its handler reads them from the
/// body: what the request-level check could not do.
pub struct KeyCheck {
    authorizer: Arc<Authorizer>,
    access_key: Option<String>,
    session_token: Option<String>,
    keys: Vec<(String, Vec<String>)>,
}

impl KeyCheck {
    /// May the caller delete `key` (the version `version_id`, when given) from `bucket`?
    pub fn check(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass: bool,
    ) -> Result<(), Denied> {
        let versioned = version_id.is_some();
        let n: Vec<(&str, Option<String>)> = delete_key(bucket, key, versioned, bypass)
            .into_iter()
            .map(|Needed { action, resource }| (action, Some(resource)))
            .collect();
        let signer = self.access_key.as_deref().map(|k| Signer {
            access_key: k,
            session_token: self.session_token.as_deref(),
        });
        let mut keys = self.keys.clone();
        if let Some(v) = version_id {
            keys_push(&mut keys, "s3:versionid", v);
        }
        self.authorizer
            .authorize(signer, &n, &keys)
            .inspect_err(|e| {
                tracing::info!(op = "DeleteObjects", key, access_key = self.access_key.as_deref().unwrap_or("anonymous"), reason = %e, "access denied");
            })
    }
}

/// Whether a peer site's replication identity may make this S3 request: a PutObject or
/// DeleteObject carrying the replica headers, or a GetObject or HeadObject the peer proxies for a
/// client it authorized itself (marked, so it is answered from what this site holds and never
/// proxied on); nothing else (the authorizer asks this before any policy; the S3 handlers check
/// the headers' signer again (`s3::replica::of_request`)).
fn peer_may(op: &str, headers: &http::HeaderMap) -> bool {
    match op {
        "PutObject" | "DeleteObject" => {
            headers.contains_key(crate::object::replica::VERSION_ID_HEADER)
        }
        "GetObject" | "HeadObject" => headers.contains_key(crate::link::PROXIED_HEADER),
        _ => false,
    }
}
