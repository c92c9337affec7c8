//! Where things live on a drive: metadata keys and shard paths. Bucket names never contain `/`,
//! so `o/<bucket>/<key>` sorts a bucket's keys bytewise, which is S3's listing order.

pub const SITE_STATE: &[u8] = b"s/site-state";

pub fn object(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_objects(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn bucket_objects(bucket: &str) -> Vec<u8> {
    format!("o/{bucket}/").into_bytes()
}

pub fn upload(bucket: &str, upload_id: &str) -> Vec<u8> {
    let mut k = bucket_uploads(bucket);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

pub fn bucket_uploads(bucket: &str) -> Vec<u8> {
    format!("u/{bucket}/").into_bytes()
}

/// A version removed for good that peer sites must remove too (`object::purge`). Neither a bucket
/// name nor a version id holds `/`, so the key follows the second one whole.
pub fn purge(bucket: &str, version_id: &str, key: &str) -> Vec<u8> {
    format!("{PURGES}{bucket}/{version_id}/{key}").into_bytes()
}

pub const PURGES: &str = "r/";

/// `(bucket, version id, key)` of a [`purge`] key.
pub fn parse_purge(k: &[u8]) -> Option<(String, String, String)> {
    let s = std::str::from_utf8(k).ok()?.strip_prefix(PURGES)?;
    let (bucket, rest) = s.split_once('/')?;
    let (id, key) = rest.split_once('/')?;
    Some((bucket.into(), id.into(), key.into()))
}

pub fn part(upload_id: &str, number: u32) -> Vec<u8> {
    let mut k = upload_parts(upload_id);
    k.extend_from_slice(format!("{number:05}").as_bytes());
    k
}

pub fn upload_parts(upload_id: &str) -> Vec<u8> {
    format!("p/{upload_id}/").into_bytes()
}

/// Directory of a version's shard files (or of a multipart upload's parts).
pub fn data_dir(dir: &str) -> String {
    let fan = dir.get(..2).unwrap_or("00");
    format!("data/{fan}/{dir}")
}

pub fn tmp_dir(id: &str) -> String {
    format!("tmp/{id}")
}

pub fn part_file(number: u32) -> String {
    format!("part.{number}")
}
