//! The deterministic state machine: `apply` is a pure function of the state and the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError};
use crate::iam::identity::IamState;
use crate::model::{BucketInfo, Versioning};
use crate::site::Sites;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    /// Index of the last applied command; a persisted copy with a higher index is newer.
    pub applied: u64,
    pub buckets: BTreeMap<String, BucketInfo>,
    #[serde(default)]
    pub kms: crate::kms::KmsRegistry,
    #[serde(default)]
    pub iam: IamState,
    /// Peer sites and the replication outbox (`crate::site`).
    #[serde(default)]
    pub sites: Sites,
}

impl SiteState {
    /// Applies one command. A rejected command leaves the state untouched (but still counts as applied,
    /// so every replica that sees it agrees on the index).
    pub fn apply(&mut self, cmd: &Command) -> Result<(), CommandError> {
        self.applied += 1;
        self.apply_change(cmd)
    }

    /// Applies `cmd` without counting it; a change made here joins the site outbox, stamped
    /// (`crate::stamp`) when its proposer gave its time.
    pub(crate) fn apply_change(&mut self, cmd: &Command) -> Result<(), CommandError> {
        let (now_ns, cmd) = match cmd {
            Command::At { now_ns, command } => (Some(*now_ns), command.as_ref()),
            c => (None, c),
        };
        let local = !matches!(cmd, Command::Site(_));
        self.change(cmd, now_ns)?;
        if local {
            self.sites.record(cmd, now_ns);
        }
        Ok(())
    }

    /// Applies `cmd`, proposed at `now_ns` if its proposer said.
    pub(crate) fn change(
        &mut self,
        cmd: &Command,
        now_ns: Option<i64>,
    ) -> Result<(), CommandError> {
        match cmd {
            Command::CreateBucket {
                name,
                created_ns,
                object_lock,
            } => {
                if self.buckets.contains_key(name) {
                    return Err(CommandError::BucketExists(name.clone()));
                }
                // Object replication between sites needs version ids.
                let versioning = if *object_lock || self.sites.enabled() {
                    Versioning::Enabled
                } else {
                    Versioning::Unversioned
                };
                self.buckets.insert(
                    name.clone(),
                    BucketInfo {
                        name: name.clone(),
                        created_ns: *created_ns,
                        versioning,
                        object_lock: *object_lock,
                        default_retention: None,
                        encryption: None,
                        policy: None,
                        tags: Vec::new(),
                        lifecycle: Vec::new(),
                        cors: Vec::new(),
                    },
                );
                Ok(())
            }
            Command::DeleteBucket { name } => self
                .buckets
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| CommandError::NoSuchBucket(name.clone())),
            Command::SetVersioning { name, versioning } => {
                crate::bucket_versioning::set_versioning(self.bucket_mut(name)?, *versioning)
            }
            Command::SetObjectLock {
                name,
                default_retention,
            } => crate::bucket_versioning::set_lock_config(
                self.bucket_mut(name)?,
                *default_retention,
            ),
            Command::SetBucketEncryption { name, encryption } => {
                self.bucket_mut(name)?.encryption = encryption.clone();
                Ok(())
            }
            Command::Kms(c) => self.kms.apply(c),
            Command::Restore { state } => {
                if !self.buckets.is_empty() {
                    return Err(CommandError::NotEmpty);
                }
                self.buckets = state.buckets.clone();
                self.kms = state.kms.clone();
                self.iam = state.iam.clone();
                self.sites = state.sites.clone();
                Ok(())
            }
            Command::Iam(c) => Ok(self.iam.apply(c)?),
            Command::SetBucketTagging { name, tags } => {
                crate::model::check_bucket_tags(tags).map_err(CommandError::InvalidTag)?;
                self.bucket_mut(name)?.tags = tags.clone();
                Ok(())
            }
            Command::SetBucketLifecycle { name, rules } => {
                crate::lifecycle::check_rules(rules)?;
                self.bucket_mut(name)?.lifecycle = rules.clone();
                Ok(())
            }
            Command::SetBucketCors { name, rules } => {
                crate::cors::check_rules(rules)?;
                self.bucket_mut(name)?.cors = rules.clone();
                Ok(())
            }
            Command::SetBucketPolicy { bucket, policy } => {
                self.bucket_mut(bucket)?.policy = policy.clone();
                Ok(())
            }
            Command::Site(c) => self.apply_site(c, now_ns),
            Command::At { .. } => Err(CommandError::InvalidRequest(
                "a proposal's time wraps one command, not another time".into(),
            )),
        }
    }

    pub fn bucket(&self, name: &str) -> Option<&BucketInfo> {
        self.buckets.get(name)
    }

    fn bucket_mut(&mut self, name: &str) -> Result<&mut BucketInfo, CommandError> {
        self.buckets
            .get_mut(name)
            .ok_or_else(|| CommandError::NoSuchBucket(name.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str) -> Command {
        Command::CreateBucket {
            name: name.into(),
            created_ns: 7,
            object_lock: false,
        }
    }

    #[test]
    fn restore_only_into_an_empty_state() {
        let mut kept = SiteState::default();
        kept.apply(&create("a")).unwrap();
        let mut fresh = SiteState::default();
        fresh
            .apply(&Command::Restore {
                state: Box::new(kept.clone()),
            })
            .unwrap();
        assert_eq!(fresh.buckets, kept.buckets);
        let mut live = SiteState::default();
        live.apply(&create("b")).unwrap();
        assert_eq!(
            live.apply(&Command::Restore {
                state: Box::new(kept)
            }),
            Err(CommandError::NotEmpty)
        );
        assert!(live.bucket("a").is_none());
    }

    #[test]
    fn apply_is_deterministic_and_checks_existence() {
        let cmds = [
            create("a"),
            create("b"),
            create("a"),
            Command::DeleteBucket { name: "b".into() },
        ];
        let run = || {
            let mut s = SiteState::default();
            let results: Vec<_> = cmds.iter().map(|c| s.apply(c)).collect();
            (s, results)
        };
        let (s1, r1) = run();
        let (s2, r2) = run();
        assert_eq!(s1, s2);
        assert_eq!(r1, r2);
        assert_eq!(r1[2], Err(CommandError::BucketExists("a".into())));
        assert_eq!(s1.applied, 4);
        assert_eq!(s1.buckets.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn snapshot_roundtrip() {
        let mut s = SiteState::default();
        s.apply(&create("x")).unwrap();
        s.apply(&Command::CreateBucket {
            name: "locked".into(),
            created_ns: 1,
            object_lock: true,
        })
        .unwrap();
        let restored = SiteState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(restored, s);
        assert_eq!(
            restored.bucket("locked").unwrap().versioning,
            Versioning::Enabled
        );
    }

    #[test]
    fn delete_missing_is_an_error() {
        let mut s = SiteState::default();
        assert_eq!(
            s.apply(&Command::DeleteBucket {
                name: "nope".into()
            }),
            Err(CommandError::NoSuchBucket("nope".into()))
        );
    }

    #[test]
    fn bucket_tags_are_checked_where_they_are_applied() {
        use crate::model::BucketTag;
        let tag = |k: &str, v: &str| BucketTag {
            key: k.into(),
            value: v.into(),
        };
        let set = |tags: Vec<BucketTag>| Command::SetBucketTagging {
            name: "a".into(),
            tags,
        };
        let mut s = SiteState::default();
        s.apply(&Command::CreateBucket {
            name: "a".into(),
            created_ns: 1,
            object_lock: false,
        })
        .unwrap();
        let good = vec![tag("team", "blue"), tag("cost", "")];
        s.apply(&set(good.clone())).unwrap();
        // Refused sets, as a peer site could send them, change nothing.
        for bad in [
            vec![tag("", "x")],
            vec![tag("AWS:x", "y")],
            vec![tag("k", "1"), tag("k", "2")],
            (0..51).map(|i| tag(&format!("k{i}"), "v")).collect(),
        ] {
            assert!(matches!(
                s.apply(&set(bad)),
                Err(CommandError::InvalidTag(_))
            ));
        }
        let restored = SiteState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(restored.bucket("a").unwrap().tags, good);
        s.apply(&set(Vec::new())).unwrap();
        assert!(s.bucket("a").unwrap().tags.is_empty());
    }

    #[test]
    fn lifecycle_rules_are_checked_where_they_are_applied() {
        use crate::lifecycle::{Expiration, LifecycleError, LifecycleFilter, LifecycleRule};
        let rule = |id: &str, days: i64| LifecycleRule {
            id: id.into(),
            enabled: true,
            filter: LifecycleFilter::Prefix("logs/".into()),
            expiration: Some(Expiration::Days(days)),
            expired_object_delete_marker: false,
            noncurrent: None,
            abort_multipart_days: None,
        };
        let set = |rules: Vec<LifecycleRule>| Command::SetBucketLifecycle {
            name: "a".into(),
            rules,
        };
        let mut s = SiteState::default();
        s.apply(&create("a")).unwrap();
        let good = vec![rule("r1", 3), rule("r2", 1)];
        s.apply(&set(good.clone())).unwrap();
        // Refused sets, as a peer site could send them, change nothing.
        assert!(matches!(
            s.apply(&set(vec![rule("r", 0)])),
            Err(CommandError::InvalidLifecycle(
                LifecycleError::InvalidArgument(_)
            ))
        ));
        assert!(matches!(
            s.apply(&set(vec![rule("r", 1), rule("r", 2)])),
            Err(CommandError::InvalidLifecycle(_))
        ));
        let restored = SiteState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(restored.bucket("a").unwrap().lifecycle, good);
        s.apply(&set(Vec::new())).unwrap();
        assert!(s.bucket("a").unwrap().lifecycle.is_empty());
        // A bucket without rules serializes as before rules existed.
        assert!(!String::from_utf8(s.to_bytes())
            .unwrap()
            .contains("lifecycle"));
    }

    #[test]
    fn cors_rules_are_checked_where_they_are_applied() {
        use crate::cors::{CorsError, CorsRule};
        let rule = |method: &str| CorsRule {
            id: None,
            allowed_origins: vec!["https://app.example.com".into()],
            allowed_methods: vec![method.into()],
            allowed_headers: Vec::new(),
            expose_headers: vec!["ETag".into()],
            max_age_seconds: Some(600),
        };
        let set = |rules: Vec<CorsRule>| Command::SetBucketCors {
            name: "a".into(),
            rules,
        };
        let mut s = SiteState::default();
        s.apply(&create("a")).unwrap();
        let good = vec![rule("GET"), rule("PUT")];
        s.apply(&set(good.clone())).unwrap();
        // A refused set, as a peer site could send it, changes nothing.
        assert!(matches!(
            s.apply(&set(vec![rule("PATCH")])),
            Err(CommandError::InvalidCors(CorsError::InvalidRequest(_)))
        ));
        let restored = SiteState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(restored.bucket("a").unwrap().cors, good);
        s.apply(&set(Vec::new())).unwrap();
        assert!(s.bucket("a").unwrap().cors.is_empty());
        // A bucket without rules serializes as before CORS existed.
        assert!(!String::from_utf8(s.to_bytes()).unwrap().contains("cors"));
    }

    #[test]
    fn bucket_encryption_is_set_cleared_and_survives_a_snapshot() {
        use crate::model::BucketEncryption;
        let mut s = SiteState::default();
        s.apply(&create("a")).unwrap();
        let kms = Some(BucketEncryption::SseKms {
            key_id: Some("k1".into()),
        });
        s.apply(&Command::SetBucketEncryption {
            name: "a".into(),
            encryption: kms.clone(),
        })
        .unwrap();
        assert_eq!(s.bucket("a").unwrap().encryption, kms);
        let restored = SiteState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(restored.bucket("a").unwrap().encryption, kms);
        s.apply(&Command::SetBucketEncryption {
            name: "a".into(),
            encryption: None,
        })
        .unwrap();
        assert_eq!(s.bucket("a").unwrap().encryption, None);
        assert_eq!(
            s.apply(&Command::SetBucketEncryption {
                name: "nope".into(),
                encryption: Some(BucketEncryption::SseS3),
            }),
            Err(CommandError::NoSuchBucket("nope".into()))
        );
    }
}
