//! ListObjectVersions: every agreed version and delete marker, keys in order and each key's
//! versions newest first, paged by key-marker / version-id-marker as AWS pages them.

use super::list::{agreed_versions, Entry, ListPage};
use super::{keys, ObjectError, ObjectLayer, ObjectResult};

impl ObjectLayer {
    /// Up to `max` versions and common prefixes after (`key_marker`, `version_id_marker`): with a
    /// version id marker the rest of that key's versions come first, else the key is skipped.
    pub async fn list_object_versions(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: &str,
        version_id_marker: Option<&str>,
        max: usize,
    ) -> ObjectResult<ListPage> {
        let mut page = ListPage::default();
        if let Some(vm) = version_id_marker.filter(|v| !v.is_empty()) {
            if key_marker.is_empty() {
                return Err(ObjectError::InvalidArgument(
                    "A version-id marker cannot be specified without a key marker.".into(),
                ));
            }
            let (set, _) = self.place(bucket, key_marker);
            let records = set.read_records(&keys::object(bucket, key_marker)).await;
            let answered = records.iter().filter(|r| r.is_ok()).count();
            if answered < set.read_quorum {
                return Err(ObjectError::ReadQuorum {
                    have: answered,
                    need: set.read_quorum,
                });
            }
            let records =
                super::settle::settled_answers(&records, set.read_quorum, set.write_quorum);
            let versions = agreed_versions(&records, set.read_quorum);
            if key_marker.starts_with(prefix) {
                if let Some(pos) = versions.iter().position(|v| v.version_id == vm) {
                    for (i, version) in versions.into_iter().enumerate().skip(pos + 1) {
                        if page.entries.len() == max {
                            page.truncated = true;
                            return Ok(page);
                        }
                        page.entries.push(Entry::Object {
                            key: key_marker.to_string(),
                            version: Box::new(version),
                            is_latest: i == 0,
                        });
                    }
                }
            }
        }
        self.walk(bucket, prefix, delimiter, key_marker, max, true, page)
            .await
    }
}
