use super::*;

fn sealed(tag: u8) -> SealedSecret {
    SealedSecret {
        nonce: vec![tag; 12],
        ciphertext: vec![tag; 24],
    }
}

fn add_user(k: &str) -> IamCommand {
    IamCommand::AddUser {
        access_key: k.into(),
        secret: sealed(1),
    }
}

const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;

fn svc(parent: Parent, policy: Option<&str>) -> ServiceAccount {
    ServiceAccount {
        parent,
        secret: sealed(3),
        policy: policy.map(str::to_owned),
        expires_ns: None,
        enabled: true,
        name: None,
        description: None,
        asserted: Asserted::default(),
    }
}

fn state_with_alice() -> IamState {
    let mut s = IamState::default();
    s.apply(&add_user("alice")).unwrap();
    s
}

#[test]
fn users_are_added_disabled_and_removed() {
    let mut s = state_with_alice();
    assert!(s.users["alice"].enabled);
    s.apply(&IamCommand::SetUserEnabled {
        access_key: "alice".into(),
        enabled: false,
    })
    .unwrap();
    assert!(!s.users["alice"].enabled);
    // Adding again replaces the secret and keeps the rest.
    s.apply(&IamCommand::AddUser {
        access_key: "alice".into(),
        secret: sealed(9),
    })
    .unwrap();
    assert_eq!(s.users["alice"].secret, sealed(9));
    assert!(!s.users["alice"].enabled);
    s.apply(&IamCommand::RemoveUser {
        access_key: "alice".into(),
    })
    .unwrap();
    assert!(s.users.is_empty());
    assert_eq!(
        s.apply(&IamCommand::RemoveUser {
            access_key: "alice".into()
        }),
        Err(IamError::NoSuchUser("alice".into()))
    );
}

#[test]
fn access_keys_are_validated() {
    let mut s = IamState::default();
    for bad in ["ab", "has space", "a/b", &"x".repeat(129)] {
        assert_eq!(
            s.apply(&add_user(bad)),
            Err(IamError::InvalidAccessKey(bad.to_owned()))
        );
    }
    assert!(s.users.is_empty());
}

#[test]
fn groups_take_existing_users_and_must_be_empty_to_go() {
    let mut s = state_with_alice();
    let add = |m: &str| IamCommand::AddGroupMembers {
        group: "devs".into(),
        members: vec![m.into()],
    };
    assert_eq!(
        s.apply(&add("bob")),
        Err(IamError::NoSuchUser("bob".into()))
    );
    assert!(s.groups.is_empty());
    s.apply(&add("alice")).unwrap();
    assert_eq!(s.groups_of("alice").count(), 1);
    let remove_group = IamCommand::RemoveGroupMembers {
        group: "devs".into(),
        members: vec![],
    };
    assert_eq!(
        s.apply(&remove_group),
        Err(IamError::GroupNotEmpty("devs".into()))
    );
    s.apply(&IamCommand::SetGroupEnabled {
        group: "devs".into(),
        enabled: false,
    })
    .unwrap();
    assert!(!s.groups["devs"].enabled);
    s.apply(&IamCommand::RemoveGroupMembers {
        group: "devs".into(),
        members: vec!["alice".into()],
    })
    .unwrap();
    s.apply(&remove_group).unwrap();
    assert!(s.groups.is_empty());
}

#[test]
fn removing_a_user_removes_memberships_and_service_accounts() {
    let mut s = state_with_alice();
    s.apply(&IamCommand::AddGroupMembers {
        group: "g".into(),
        members: vec!["alice".into()],
    })
    .unwrap();
    s.apply(&IamCommand::AddServiceAccount {
        access_key: "alice-svc".into(),
        account: Box::new(svc(Parent::User("alice".into()), None)),
    })
    .unwrap();
    s.apply(&IamCommand::RemoveUser {
        access_key: "alice".into(),
    })
    .unwrap();
    assert!(s.groups["g"].members.is_empty());
    assert!(s.service_accounts.is_empty());
}

#[test]
fn policies_are_validated_and_canned_ones_are_fixed() {
    let mut s = state_with_alice();
    let put = |name: &str, document: &str| IamCommand::PutPolicy {
        name: name.into(),
        document: document.into(),
    };
    match s.apply(&put("bad", r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObjects","Resource":"*"}]}"#)) {
        Err(IamError::MalformedPolicy(m)) => assert!(m.contains("s3:GetObjects"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.apply(&put("readonly", DOC)),
        Err(IamError::CannedPolicy("readonly".into()))
    );
    assert_eq!(
        s.apply(&IamCommand::DeletePolicy {
            name: "readwrite".into()
        }),
        Err(IamError::CannedPolicy("readwrite".into()))
    );
    s.apply(&put("getb", DOC)).unwrap();
    let attach = IamCommand::AttachPolicy {
        policies: vec!["getb".into(), "readonly".into()],
        target: PolicyTarget::User("alice".into()),
    };
    s.apply(&attach).unwrap();
    assert_eq!(s.users["alice"].policies.len(), 2);
    assert_eq!(
        s.apply(&IamCommand::DeletePolicy {
            name: "getb".into()
        }),
        Err(IamError::PolicyInUse("getb".into()))
    );
    assert_eq!(
        s.apply(&IamCommand::AttachPolicy {
            policies: vec!["nope".into()],
            target: PolicyTarget::User("alice".into()),
        }),
        Err(IamError::NoSuchPolicy("nope".into()))
    );
    assert_eq!(
        s.apply(&IamCommand::AttachPolicy {
            policies: vec!["getb".into()],
            target: PolicyTarget::Group("nogroup".into()),
        }),
        Err(IamError::NoSuchGroup("nogroup".into()))
    );
    s.apply(&IamCommand::DetachPolicy {
        policies: vec!["getb".into()],
        target: PolicyTarget::User("alice".into()),
    })
    .unwrap();
    s.apply(&IamCommand::DeletePolicy {
        name: "getb".into(),
    })
    .unwrap();
    assert!(s.policy_document("getb").is_none());
    assert!(s.policy_document("readonly").is_some());
}

#[test]
fn service_accounts_need_a_parent_and_a_free_key() {
    let mut s = state_with_alice();
    let add = |k: &str, a: ServiceAccount| IamCommand::AddServiceAccount {
        access_key: k.into(),
        account: Box::new(a),
    };
    assert_eq!(
        s.apply(&add("svc1", svc(Parent::User("bob".into()), None))),
        Err(IamError::NoSuchUser("bob".into()))
    );
    assert_eq!(
        s.apply(&add("alice", svc(Parent::Root, None))),
        Err(IamError::AccessKeyInUse("alice".into()))
    );
    assert!(matches!(
        s.apply(&add("svc1", svc(Parent::Root, Some("{}")))),
        Err(IamError::MalformedPolicy(_))
    ));
    s.apply(&add("svc1", svc(Parent::Root, Some(DOC)))).unwrap();
    assert_eq!(
        s.apply(&add_user("svc1")),
        Err(IamError::AccessKeyInUse("svc1".into()))
    );
    // As the Raft log carries it: the removal must survive JSON.
    let update = IamCommand::UpdateServiceAccount {
        access_key: "svc1".into(),
        secret: None,
        policy: None,
        remove_policy: true,
        expires_ns: Some(5),
        enabled: Some(false),
    };
    let update: IamCommand = serde_json::from_slice(&serde_json::to_vec(&update).unwrap()).unwrap();
    s.apply(&update).unwrap();
    let a = &s.service_accounts["svc1"];
    assert_eq!(
        (a.policy.as_deref(), a.expires_ns, a.enabled),
        (None, Some(5), false)
    );
    s.apply(&IamCommand::RemoveServiceAccount {
        access_key: "svc1".into(),
    })
    .unwrap();
    assert!(s.service_accounts.is_empty());
}

#[test]
fn commands_naming_root_are_recognised() {
    let root = "rootkey";
    assert!(add_user(root).names(root));
    assert!(IamCommand::SetUserEnabled {
        access_key: root.into(),
        enabled: false
    }
    .names(root));
    assert!(IamCommand::RemoveUser {
        access_key: root.into()
    }
    .names(root));
    assert!(IamCommand::AttachPolicy {
        policies: vec!["readonly".into()],
        target: PolicyTarget::User(root.into())
    }
    .names(root));
    assert!(!add_user("alice").names(root));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let s = state_with_alice();
    let text = format!("{s:?}");
    assert!(text.contains("SealedSecret(..)"));
    assert!(!text.contains("[1, 1, 1"));
}

#[test]
fn policies_map_to_directory_dns() {
    let mut s = IamState::default();
    let (alice, staff, ops) = (
        "uid=alice,ou=people,dc=x",
        "cn=staff,ou=groups,dc=x",
        "cn=ops,ou=groups,dc=x",
    );
    let attach = |policies: &[&str], target: PolicyTarget| IamCommand::AttachPolicy {
        policies: policies.iter().map(|p| p.to_string()).collect(),
        target,
    };
    let detach = |policies: &[&str], target: PolicyTarget| IamCommand::DetachPolicy {
        policies: policies.iter().map(|p| p.to_string()).collect(),
        target,
    };
    s.apply(&attach(&["readonly"], PolicyTarget::LdapUser(alice.into())))
        .unwrap();
    s.apply(&attach(
        &["readwrite"],
        PolicyTarget::LdapGroup(staff.into()),
    ))
    .unwrap();
    let groups = [staff.to_owned(), ops.to_owned()];
    let got: Vec<_> = s.ldap.policies_of(alice, &groups).collect();
    assert_eq!(got, [("readonly", None), ("readwrite", Some(staff))]);
    assert_eq!(s.ldap.policies_of("uid=bob,dc=x", &[]).count(), 0);
    // Refused without a trace: unknown policy, no DN, detaching what is not attached.
    let before = s.clone();
    for bad in [
        attach(&["nope"], PolicyTarget::LdapUser(alice.into())),
        attach(&["readonly"], PolicyTarget::LdapUser("alice".into())),
        attach(&["readonly"], PolicyTarget::LdapGroup(String::new())),
        attach(&[], PolicyTarget::LdapGroup("x".repeat(MAX_DN + 1))),
        detach(&["readonly"], PolicyTarget::LdapGroup(ops.into())),
        detach(&["writeonly"], PolicyTarget::LdapUser(alice.into())),
    ] {
        assert!(s.apply(&bad).is_err(), "{bad:?}");
        assert_eq!(s, before, "{bad:?} changed the state");
    }
    assert_eq!(
        s.apply(&attach(&[], PolicyTarget::LdapGroup(ops.into()))),
        Ok(())
    );
    assert_eq!(s, before, "an empty attach creates no mapping");
    // A mapped policy cannot be deleted.
    s.apply(&IamCommand::PutPolicy {
        name: "mine".into(),
        document: DOC.into(),
    })
    .unwrap();
    s.apply(&attach(&["mine"], PolicyTarget::LdapGroup(ops.into())))
        .unwrap();
    assert_eq!(
        s.apply(&IamCommand::DeletePolicy {
            name: "mine".into()
        }),
        Err(IamError::PolicyInUse("mine".into()))
    );
    // Detaching the last policy removes the mapping.
    s.apply(&detach(&["mine"], PolicyTarget::LdapGroup(ops.into())))
        .unwrap();
    assert!(!s.ldap.groups.contains_key(ops));
    s.apply(&IamCommand::DeletePolicy {
        name: "mine".into(),
    })
    .unwrap();
}
