//! SigV2's canonical resource for a bucket request: clients (botocore, s3cmd) sign `/bucket/`
//! even when they send path-style `/bucket`, as AWS accepts; s3s signs the path as sent. Giving
//! such requests the trailing slash before s3s sees them makes both sides sign the same resource.
//! The slash changes nothing else: `/bucket/` and `/bucket` name the same bucket.

use hyper::{HeaderMap, Uri};

/// True for a SigV2 request (header or presigned).
fn is_sigv2(headers: &HeaderMap, uri: &Uri) -> bool {
    let header = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    let query = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("AWSAccessKeyId=")));
    header || query
}

/// The URI a SigV2 request to a bucket (`/bucket`, path style) is checked with: `/bucket/`.
/// `None` when nothing changes.
pub fn canonical_bucket_uri(headers: &HeaderMap, uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let bucket_only = path.len() > 1 && path.starts_with('/') && !path[1..].contains('/');
    if !bucket_only || !is_sigv2(headers, uri) {
        return None;
    }
    let pq = match uri.query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn only_sigv2_bucket_paths_get_the_slash() {
        let v2 = with_auth("AWS AKID:c2ln");
        let v4 = with_auth("AWS4-HMAC-SHA256 Credential=x");
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            canonical_bucket_uri(&v2, &uri("/bkt?prefix=a&encoding-type=url")),
            Some(uri("/bkt/?prefix=a&encoding-type=url"))
        );
        assert_eq!(canonical_bucket_uri(&v2, &uri("/bkt")), Some(uri("/bkt/")));
        assert_eq!(
            canonical_bucket_uri(&HeaderMap::new(), &uri("/bkt?AWSAccessKeyId=A&Signature=s")),
            Some(uri("/bkt/?AWSAccessKeyId=A&Signature=s"))
        );
        for unchanged in ["/bkt/", "/bkt/key", "/"] {
            assert_eq!(
                canonical_bucket_uri(&v2, &uri(unchanged)),
                None,
                "{unchanged}"
            );
        }
        assert_eq!(canonical_bucket_uri(&v4, &uri("/bkt")), None);
        assert_eq!(canonical_bucket_uri(&HeaderMap::new(), &uri("/bkt")), None);
    }
}
