//! The site's KMS key registry: named master keys, replicated by Raft so every node can use them.
//!
//! Key material is stored only wrapped by a root key the nodes hold (never the state machine), and
//! wrapped by the proposer with its own RNG, so applying a command stays a pure function. Deleting
//! a key wipes its wrapped material and keeps a tombstone: objects under it stay unreadable for
//! good, and the name cannot be reused for a different key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::CommandError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    /// Unusable until enabled again (objects under it cannot be read meanwhile).
    Disabled,
    /// Material wiped: permanent.
    Deleted,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKey {
    pub created_ns: i64,
    pub state: KeyState,
    /// The key material wrapped by the root key; empty once deleted.
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KmsKey({:?}, created {})", self.state, self.created_ns)
    }
}

/// All keys by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsRegistry {
    pub keys: BTreeMap<String, KmsKey>,
}

/// A change to the registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KmsCommand {
    Create {
        name: String,
        created_ns: i64,
        wrapped: Vec<u8>,
    },
    SetState {
        name: String,
        state: KeyState,
    },
    /// Replaces the wrapped material of `name` if it is still `from` (a compare-and-swap: nodes
    /// re-wrapping the same key at once leave one result). The upgrade from keys wrapped by a
    /// password-derived key to the master key.
    Rewrap {
        name: String,
        from: Vec<u8>,
        wrapped: Vec<u8>,
    },
}

impl std::fmt::Debug for KmsCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KmsCommand::Create { name, .. } => write!(f, "Create({name})"),
            KmsCommand::SetState { name, state } => write!(f, "SetState({name}, {state:?})"),
            KmsCommand::Rewrap { name, .. } => write!(f, "Rewrap({name})"),
        }
    }
}

impl KmsRegistry {
    pub fn apply(&mut self, cmd: &KmsCommand) -> Result<(), CommandError> {
        match cmd {
            KmsCommand::Create {
                name,
                created_ns,
                wrapped,
            } => {
                if self.keys.contains_key(name) {
                    return Err(CommandError::KmsKeyExists(name.clone()));
                }
                self.keys.insert(
                    name.clone(),
                    KmsKey {
                        created_ns: *created_ns,
                        state: KeyState::Enabled,
                        wrapped: wrapped.clone(),
                    },
                );
                Ok(())
            }
            KmsCommand::SetState { name, state } => {
                let key = self
                    .keys
                    .get_mut(name)
                    .ok_or_else(|| CommandError::NoSuchKmsKey(name.clone()))?;
                if key.state == KeyState::Deleted {
                    return Err(CommandError::KmsKeyDeleted(name.clone()));
                }
                key.state = *state;
                if *state == KeyState::Deleted {
                    key.wrapped.clear();
                }
                Ok(())
            }
            KmsCommand::Rewrap {
                name,
                from,
                wrapped,
            } => {
                let key = self
                    .keys
                    .get_mut(name)
                    .ok_or_else(|| CommandError::NoSuchKmsKey(name.clone()))?;
                // Deleted (wiped) or already re-wrapped: nothing to do.
                if key.state != KeyState::Deleted && key.wrapped == *from {
                    key.wrapped = wrapped.clone();
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str) -> KmsCommand {
        KmsCommand::Create {
            name: name.into(),
            created_ns: 1,
            wrapped: vec![1, 2, 3],
        }
    }

    fn set(name: &str, state: KeyState) -> KmsCommand {
        KmsCommand::SetState {
            name: name.into(),
            state,
        }
    }

    #[test]
    fn lifecycle_disable_enable_delete_for_good() {
        let mut r = KmsRegistry::default();
        r.apply(&create("k")).unwrap();
        assert_eq!(
            r.apply(&create("k")),
            Err(CommandError::KmsKeyExists("k".into()))
        );
        r.apply(&set("k", KeyState::Disabled)).unwrap();
        assert_eq!(r.keys["k"].state, KeyState::Disabled);
        r.apply(&set("k", KeyState::Enabled)).unwrap();
        r.apply(&set("k", KeyState::Deleted)).unwrap();
        assert!(r.keys["k"].wrapped.is_empty(), "material wiped");
        assert_eq!(
            r.apply(&set("k", KeyState::Enabled)),
            Err(CommandError::KmsKeyDeleted("k".into()))
        );
        assert_eq!(
            r.apply(&create("k")),
            Err(CommandError::KmsKeyExists("k".into())),
            "a deleted name is never reused"
        );
        assert_eq!(
            r.apply(&set("nope", KeyState::Disabled)),
            Err(CommandError::NoSuchKmsKey("nope".into()))
        );
    }

    #[test]
    fn rewrap_swaps_only_the_material_it_was_made_from() {
        let mut r = KmsRegistry::default();
        r.apply(&create("k")).unwrap();
        let rewrap = |from: &[u8], to: &[u8]| KmsCommand::Rewrap {
            name: "k".into(),
            from: from.to_vec(),
            wrapped: to.to_vec(),
        };
        r.apply(&rewrap(&[1, 2, 3], &[4])).unwrap();
        assert_eq!(r.keys["k"].wrapped, vec![4]);
        r.apply(&rewrap(&[1, 2, 3], &[5])).unwrap();
        assert_eq!(
            r.keys["k"].wrapped,
            vec![4],
            "a second, racing re-wrap is a no-op"
        );
        r.apply(&set("k", KeyState::Deleted)).unwrap();
        r.apply(&rewrap(&[], &[6])).unwrap();
        assert!(r.keys["k"].wrapped.is_empty(), "a deleted key stays wiped");
        assert_eq!(
            r.apply(&KmsCommand::Rewrap {
                name: "nope".into(),
                from: vec![],
                wrapped: vec![]
            }),
            Err(CommandError::NoSuchKmsKey("nope".into()))
        );
    }

    #[test]
    fn debug_never_shows_material() {
        let r = {
            let mut r = KmsRegistry::default();
            r.apply(&create("k")).unwrap();
            r
        };
        let s = format!("{r:?} {:?}", create("k"));
        assert!(!s.contains("[1, 2, 3]"), "{s}");
    }
}
