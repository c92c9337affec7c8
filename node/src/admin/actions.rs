//! The `admin:*` action each admin API call needs (MinIO's names, so MinIO admin policies load
//! unchanged). A call missing here is refused for everyone but root: Raft membership changes
//! (they decide which addresses receive the site's internode credentials) and the internode
//! secret itself are root's alone.

/// The action for `method` on `op` (the path after `/cairn/admin/v1/`); `Some(None)` for calls
/// any authenticated caller may make (`whoami`).
pub fn admin_action(method: &str, op: &str) -> Option<Option<&'static str>> {
    let a = match (method, op) {
        ("GET", "whoami") => return Some(None),
        ("POST", "heal") | ("GET", "heal/status") => "admin:Heal",
        ("GET", "info" | "info/drives" | "raft/status") => "admin:ServerInfo",
        ("GET", "trace") => crate::observe::trace::ACTION,
        ("POST", "iam/user/add") => "admin:CreateUser",
        ("POST", "iam/user/remove") => "admin:DeleteUser",
        ("POST", "iam/user/enable") => "admin:EnableUser",
        ("POST", "iam/user/disable") => "admin:DisableUser",
        ("GET", "iam/user/list") => "admin:ListUsers",
        ("GET", "iam/user/info") => "admin:GetUser",
        ("POST", "iam/group/add") => "admin:AddUserToGroup",
        ("POST", "iam/group/remove") => "admin:RemoveUserFromGroup",
        ("POST", "iam/group/enable") => "admin:EnableGroup",
        ("POST", "iam/group/disable") => "admin:DisableGroup",
        ("GET", "iam/group/list") => "admin:ListGroups",
        ("GET", "iam/group/info") => "admin:GetGroup",
        ("POST", "iam/policy/create") => "admin:CreatePolicy",
        ("POST", "iam/policy/delete") => "admin:DeletePolicy",
        ("GET", "iam/policy/list") => "admin:ListUserPolicies",
        ("GET", "iam/policy/info") => "admin:GetPolicy",
        ("POST", "iam/policy/attach" | "iam/policy/detach") => "admin:AttachUserOrGroupPolicy",
        ("POST", "idp/ldap/policy/attach" | "idp/ldap/policy/detach") => {
            "admin:AttachUserOrGroupPolicy"
        }
        ("GET", "idp/ldap/policy/entities") => "admin:ListUserPolicies",
        ("POST", "iam/svcacct/add") => "admin:CreateServiceAccount",
        ("GET", "iam/svcacct/list" | "iam/svcacct/info") => "admin:ListServiceAccounts",
        ("POST", "iam/svcacct/edit") => "admin:UpdateServiceAccount",
        ("POST", "iam/svcacct/remove") => "admin:RemoveServiceAccount",
        _ => return None,
    };
    Some(Some(a))
}

#[cfg(test)]
mod tests {
    use cairn_control_plane::iam::actions::check_action;

    use super::*;

    #[test]
    fn every_admin_call_maps_to_a_known_action() {
        for (m, op) in [
            ("POST", "heal"),
            ("GET", "heal/status"),
            ("GET", "info"),
            ("GET", "info/drives"),
            ("POST", "iam/user/add"),
            ("GET", "iam/group/info"),
            ("POST", "iam/policy/detach"),
            ("POST", "iam/svcacct/edit"),
            ("POST", "idp/ldap/policy/attach"),
            ("GET", "idp/ldap/policy/entities"),
            ("GET", "trace"),
        ] {
            let a = admin_action(m, op).flatten().unwrap();
            assert_eq!(check_action(a), Ok(()), "{a}");
        }
        assert_eq!(admin_action("GET", "whoami"), Some(None));
        assert_eq!(admin_action("DELETE", "iam/user/add"), None);
        // Root only: no policy can grant membership changes or the internode secret.
        for op in ["raft/add-voter", "raft/add-learner", "raft/remove-voter"] {
            assert_eq!(admin_action("POST", op), None, "{op}");
        }
        assert_eq!(admin_action("GET", "internode/secret"), None);
    }
}
