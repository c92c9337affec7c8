//! Multipart uploads: each part is erasure-coded on its own into the upload's data directory;
//! completing renames the chosen parts into place and records the version in one synced batch.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::future::join_all;
use futures::Stream;
use md5::{Digest, Md5};
use prost::Message;

use cairn_proto::meta::{KeyValue, MultipartUpload, ObjectVersion, PartInfo, UploadedPart};

use super::error::{ObjectError, ObjectResult};
use super::set::ErasureSet;
use super::stage::{BodyError, Checksummer, StoredForm};
use super::write::{self, ShardTargets, WriteOutcome};
use super::{
    cleanup, erasure_info, keys, put_version, settle_records, ObjectInfo, ObjectLayer, PutOptions,
};
use crate::drive::{Drive, DriveError, MetaOp};

/// AWS: every part but the last is at least 5 MiB, at most 10,000 parts of at most 5 GiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_NUMBER: u32 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 << 30;

async fn read_parts(
    drive: &dyn Drive,
    upload_id: &str,
) -> Result<BTreeMap<u32, UploadedPart>, DriveError> {
    let rows = drive
        .scan(
            &keys::upload_parts(upload_id),
            b"",
            MAX_PART_NUMBER as usize + 1,
        )
        .await?;
    let mut out = BTreeMap::new();
    for (_, v) in rows {
        let p = UploadedPart::decode(v.as_slice()).map_err(|e| DriveError::Meta(e.to_string()))?;
        if let Some(info) = &p.info {
            out.insert(info.number, p);
        }
    }
    Ok(out)
}

/// Strips the quotes clients put around ETags.
pub fn bare_etag(s: &str) -> &str {
    s.trim().trim_matches('"')
}

impl ObjectLayer {
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        opts: PutOptions,
        checksum_algorithm: String,
    ) -> ObjectResult<String> {
        let (set, dist) = self.place(bucket, key);
        let upload_id = self.new_id();
        let upload = MultipartUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: upload_id.clone(),
            initiated_ns: self.clock.now_ns(),
            headers: opts.headers,
            user_metadata: opts.user_metadata,
            tags: opts.tags,
            erasure: Some(erasure_info(set, &dist)),
            checksum_algorithm,
            lock_mode: opts
                .lock
                .mode
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            retain_until_ns: opts.lock.retain_until_ns,
            legal_hold: opts.lock.legal_hold,
            sse: opts.stored_form.map(|s| s.upload_record()),
        };
        set.apply_all(vec![MetaOp::Put(
            keys::upload(bucket, &upload_id),
            upload.encode_to_vec(),
        )])
        .await?;
        Ok(upload_id)
    }

    /// The upload as a read quorum of drives records it.
    pub async fn read_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ObjectResult<(&ErasureSet, MultipartUpload)> {
        let (set, _) = self.place(bucket, key);
        let k = keys::upload(bucket, upload_id);
        let rows = join_all(set.drives.iter().map(|d| d.get(&k))).await;
        let found: Vec<MultipartUpload> = rows
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .filter_map(|b| MultipartUpload::decode(b.as_slice()).ok())
            .filter(|u| u.key == key && u.upload_id == upload_id)
            .collect();
        match found.first() {
            Some(u) if found.len() >= set.read_quorum => Ok((set, u.clone())),
            _ => Err(ObjectError::NoSuchUpload),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_part<S, E, H, V>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: S,
        hasher: H,
        verify: V,
        stored_form: Option<&dyn StoredForm>,
    ) -> ObjectResult<PartInfo>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Into<BodyError>,
        H: Checksummer,
        V: FnOnce(&WriteOutcome<H::Sums>) -> ObjectResult<Vec<KeyValue>>,
    {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::InvalidArgument(format!(
                "part number must be 1..={MAX_PART_NUMBER}"
            )));
        }
        let (set, upload) = self.read_upload(bucket, key, upload_id).await?;
        let dist = upload
            .erasure
            .as_ref()
            .map(|e| e.distribution.clone())
            .unwrap_or_default();
        if dist.len() != set.size() {
            return Err(ObjectError::CorruptMeta("upload distribution".into()));
        }
        let id = self.new_id();
        let tmp = keys::tmp_dir(&id);
        let targets = ShardTargets {
            drives: dist
                .iter()
                .map(|&d| set.drives[d as usize].clone())
                .collect(),
            path: format!("{tmp}/part"),
        };
        let want_md5 = stored_form.is_none_or(|s| s.needs_stored_md5());
        let res = write::write_stream(set, &targets, body, hasher, MAX_PART_SIZE, false, want_md5)
            .await
            .and_then(|o| verify(&o).map(|c| (o, c)));
        let (out, checksums) = match res {
            Ok(v) => v,
            Err(e) => {
                cleanup(set, &tmp).await;
                return Err(e);
            }
        };
        let mut info = PartInfo {
            number,
            size: out.size,
            etag: hex::encode(out.md5),
            mod_time_ns: self.clock.now_ns(),
            checksums,
            sse_salt: Vec::new(),
        };
        if let Some(s) = stored_form {
            s.apply_part(&mut info);
        }
        let file = format!("{}.{id}", keys::part_file(number));
        let dir = keys::data_dir(upload_id);
        let record = UploadedPart {
            info: Some(info.clone()),
            file: file.clone(),
        };
        let part_key = keys::part(upload_id, number);
        let res = set
            .on_all(|d, drive| {
                let shard = dist.iter().position(|&x| x as usize == d).unwrap_or(0);
                let ok = out.ok.get(shard).copied().unwrap_or(false);
                let (from, to) = (format!("{tmp}/part"), format!("{dir}/{file}"));
                let (part_key, value) = (part_key.clone(), record.encode_to_vec());
                async move {
                    if !ok {
                        return Err(DriveError::Offline);
                    }
                    drive.rename(&from, &to).await?;
                    let old = drive
                        .get(&part_key)
                        .await?
                        .and_then(|b| UploadedPart::decode(b.as_slice()).ok());
                    drive.apply(vec![MetaOp::Put(part_key, value)]).await?;
                    if let Some(old) =
                        old.filter(|o| o.file != to.rsplit('/').next().unwrap_or_default())
                    {
                        drive
                            .delete(&format!("{}/{}", keys::data_dir(upload_id), old.file))
                            .await?;
                    }
                    Ok(())
                }
            })
            .await;
        cleanup(set, &tmp).await;
        res?;
        Ok(info)
    }

    /// The parts a read quorum of drives agrees on, by part number.
    async fn agreed_parts(
        &self,
        set: &ErasureSet,
        upload_id: &str,
    ) -> ObjectResult<BTreeMap<u32, UploadedPart>> {
        let per_drive: Vec<_> =
            join_all(set.drives.iter().map(|d| read_parts(d.as_ref(), upload_id))).await;
        let per_drive: Vec<BTreeMap<u32, UploadedPart>> =
            per_drive.into_iter().filter_map(Result::ok).collect();
        if per_drive.len() < set.read_quorum {
            return Err(ObjectError::ReadQuorum {
                have: per_drive.len(),
                need: set.read_quorum,
            });
        }
        let mut out = BTreeMap::new();
        for m in &per_drive {
            for (n, p) in m {
                let votes = per_drive.iter().filter(|o| o.get(n) == Some(p)).count();
                if votes >= set.read_quorum {
                    out.insert(*n, p.clone());
                }
            }
        }
        Ok(out)
    }

    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ObjectResult<(MultipartUpload, Vec<PartInfo>)> {
        let (set, upload) = self.read_upload(bucket, key, upload_id).await?;
        let parts = self.agreed_parts(set, upload_id).await?;
        Ok((upload, parts.into_values().filter_map(|p| p.info).collect()))
    }

    /// Completes an upload from the client's (part number, ETag) list.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: &[(u32, String)],
        versioning: cairn_control_plane::Versioning,
        replicate: bool,
    ) -> ObjectResult<ObjectInfo> {
        let (set, upload) = self.read_upload(bucket, key, upload_id).await?;
        let uploaded = self.agreed_parts(set, upload_id).await?;
        if chosen.is_empty() {
            return Err(ObjectError::InvalidPart);
        }
        if chosen.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ObjectError::InvalidPartOrder);
        }
        let mut parts = Vec::with_capacity(chosen.len());
        let mut files = Vec::with_capacity(chosen.len());
        let mut md5s = Md5::new();
        for (i, (n, etag)) in chosen.iter().enumerate() {
            let p = uploaded.get(n).ok_or(ObjectError::InvalidPart)?;
            let info = p.info.clone().ok_or(ObjectError::InvalidPart)?;
            if bare_etag(etag) != info.etag {
                return Err(ObjectError::InvalidPart);
            }
            if i + 1 < chosen.len() && info.size < MIN_PART_SIZE {
                return Err(ObjectError::EntityTooSmall);
            }
            md5s.update(
                hex::decode(&info.etag)
                    .map_err(|_| ObjectError::CorruptMeta("part etag".into()))?,
            );
            files.push((p.file.clone(), keys::part_file(*n)));
            parts.push(info);
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
        let erasure = upload
            .erasure
            .clone()
            .ok_or_else(|| ObjectError::CorruptMeta("upload erasure".into()))?;
        let dist = erasure.distribution.clone();
        let replication = if replicate {
            super::replica::PENDING
        } else {
            ""
        };
        let mut version = ObjectVersion {
            replication: replication.to_string(),
            version_id: self.version_id_for(versioning),
            delete_marker: false,
            size: parts.iter().map(|p| p.size).sum(),
            etag,
            headers: upload.headers.clone(),
            user_metadata: upload.user_metadata.clone(),
            tags: upload.tags.clone(),
            checksums: Vec::new(),
            parts,
            erasure: Some(erasure),
            data_dir: upload_id.to_string(),
            inline_data: Vec::new(),
            inlined: false,
            lock_mode: upload.lock_mode.clone(),
            retain_until_ns: upload.retain_until_ns,
            legal_hold: upload.legal_hold,
            sse: upload.sse.clone(),
            ..Default::default()
        };

        let _guard = self.locks.lock(self.key_hash(bucket, key)).await;
        let meta_key = keys::object(bucket, key);
        version.mod_time_ns = self.stamp(&set.read_records(&meta_key).await);
        let deadline_ns = self.write_deadline();
        let pending_version = ObjectVersion {
            pending_until_ns: deadline_ns,
            ..version.clone()
        };
        let dir = keys::data_dir(upload_id);
        let (version_ref, files_ref, uploaded_ref) = (&pending_version, &files, &uploaded);
        // Phase 1 on every drive; the data the new version replaces is freed only once the
        // change reached write quorum, and below it every drive gets its old record back
        // (`settle_records`), so a failed completion never costs the previous object.
        let results = join_all(set.drives.iter().enumerate().map(|(d, drive)| {
            let shard = dist.iter().position(|&x| x as usize == d).unwrap_or(0);
            let mut v = version_ref.clone();
            if let Some(e) = v.erasure.as_mut() {
                e.shard_index = shard as u32;
            }
            let (meta_key, dir) = (meta_key.clone(), dir.clone());
            async move {
                let mine = read_parts(drive.as_ref(), upload_id).await?;
                for (from, _) in files_ref {
                    if !mine
                        .values()
                        .any(|p| &p.file == from && uploaded_ref.values().any(|u| u == p))
                    {
                        return Err(DriveError::NotFound);
                    }
                }
                for (from, to) in files_ref {
                    drive
                        .rename(&format!("{dir}/{from}"), &format!("{dir}/{to}"))
                        .await?;
                }
                let keep: Vec<&String> = files_ref.iter().map(|(_, to)| to).collect();
                for name in drive.list_dir(&dir).await? {
                    if !keep.contains(&&name) {
                        drive.delete(&format!("{dir}/{name}")).await?;
                    }
                }
                let mut done = vec![
                    MetaOp::NotAfter(deadline_ns),
                    MetaOp::Delete(keys::upload(bucket, upload_id)),
                ];
                done.extend(
                    mine.keys()
                        .map(|n| MetaOp::Delete(keys::part(upload_id, *n))),
                );
                put_version(drive.as_ref(), &meta_key, &done, v).await
            }
        }))
        .await;
        // Below quorum the upload is consumed on the drives that took it, so its data goes too:
        // the client's retry answers NoSuchUpload rather than completing from a partial set.
        let pending = super::settle::Pending {
            version: &pending_version,
            deadline_ns,
            clock: &*self.clock,
        };
        if settle_records(
            set,
            &meta_key,
            results,
            std::slice::from_ref(&dir),
            Some(pending),
        )
        .await?
        {
            self.request_heal(super::HealRequest::new(bucket, key));
        }
        Ok(ObjectInfo {
            bucket: bucket.into(),
            key: key.into(),
            version,
        })
    }

    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ObjectResult<()> {
        let (set, _) = self.read_upload(bucket, key, upload_id).await?;
        set.on_all(|_, drive| async move {
            let parts = read_parts(drive.as_ref(), upload_id).await?;
            let mut ops = vec![MetaOp::Delete(keys::upload(bucket, upload_id))];
            ops.extend(
                parts
                    .keys()
                    .map(|n| MetaOp::Delete(keys::part(upload_id, *n))),
            );
            drive.apply(ops).await?;
            drive.delete(&keys::data_dir(upload_id)).await
        })
        .await
        .map(|_| ())
    }

    /// Uploads in progress in a bucket whose key starts with `prefix`, ordered by key then start time.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> ObjectResult<Vec<MultipartUpload>> {
        let mut out = Vec::new();
        let scan_prefix = keys::bucket_uploads(bucket);
        for set in &self.sets {
            let rows = join_all(
                set.drives
                    .iter()
                    .map(|d| d.scan(&scan_prefix, b"", 100_000)),
            )
            .await;
            let mut votes: BTreeMap<String, (usize, MultipartUpload)> = BTreeMap::new();
            for row in rows.into_iter().filter_map(Result::ok) {
                for (_, v) in row {
                    if let Ok(u) = MultipartUpload::decode(v.as_slice()) {
                        votes.entry(u.upload_id.clone()).or_insert((0, u)).0 += 1;
                    }
                }
            }
            out.extend(
                votes
                    .into_values()
                    .filter(|(n, u)| *n >= set.read_quorum && u.key.starts_with(prefix))
                    .map(|(_, u)| u),
            );
        }
        out.sort_by(|a, b| (&a.key, a.initiated_ns).cmp(&(&b.key, b.initiated_ns)));
        Ok(out)
    }
}
