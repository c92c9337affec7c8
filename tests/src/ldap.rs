//! A throwaway OpenLDAP directory (`slapd` from Debian's packages) on a loopback port: users,
//! groups and passwords for the AD/LDAP identity tests, plain LDAP and StartTLS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::certs::TestCa;
use crate::free_port;

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "ldap-admin-secret";

/// A user entry's DN.
pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

/// A group entry's DN.
pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},ou=groups,{SUFFIX}")
}

pub struct Slapd {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The authority of the directory's TLS certificate (for StartTLS).
    pub ca: TestCa,
}

const SCHEMA: [&str; 3] = ["core", "cosine", "inetorgperson"];

impl Slapd {
    /// Starts a directory holding `users` (uid, password) and `groups` (cn, member uids), and
    /// waits until it answers a search.
    pub async fn start(users: &[(&str, &str)], groups: &[(&str, &[&str])]) -> Slapd {
        let dir = tempfile::tempdir().expect("slapd dir");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("db dir");
        let ca = TestCa::new("cairn-test-ldap-ca");
        let (cert, key) = ca.issue("127.0.0.1");
        std::fs::write(d.join("ca.crt"), &ca.pem).unwrap();
        std::fs::write(d.join("server.crt"), cert).unwrap();
        std::fs::write(d.join("server.key"), key).unwrap();
        let includes: String = SCHEMA
            .iter()
            .map(|s| format!("include /etc/ldap/schema/{s}.schema\n"))
            .collect();
        let conf = format!(
            "{includes}pidfile {p}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             TLSCACertificateFile {p}/ca.crt\nTLSCertificateFile {p}/server.crt\n\
             TLSCertificateKeyFile {p}/server.key\n\
             database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\ndirectory {p}/db\n",
            p = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
        );
        for (uid, password) in users {
            ldif.push_str(&user_ldif(uid, password));
        }
        for (cn, members) in groups {
            ldif.push_str(&format!(
                "dn: {}\nobjectClass: groupOfNames\ncn: {cn}\n",
                group_dn(cn)
            ));
            for m in *members {
                ldif.push_str(&format!("member: {}\n", user_dn(m)));
            }
            ldif.push('\n');
        }
        std::fs::write(d.join("data.ldif"), ldif).unwrap();
        let out = std::process::Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .output()
            .expect("slapadd (install Debian's slapd: .ci/run does)");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        // `-d 0`: stay in the foreground, so the child is the server and dies with the test.
        let child = tokio::process::Command::new("slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn slapd");
        let slapd = Slapd {
            child,
            dir,
            port,
            ca,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !slapd.answers().await {
            assert!(Instant::now() < deadline, "slapd did not start in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slapd
    }

    /// `HOST:PORT`, as `CAIRN_IDENTITY_LDAP_SERVER_ADDR` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A directory with the CA's certificate in `CAs/` (no server certificate: the Cairn
    /// server stays on plain HTTP and trusts the directory's authority).
    pub fn trusting_certs_dir(&self) -> PathBuf {
        let d = self.dir.path().join("cairn-certs");
        std::fs::create_dir_all(d.join("CAs")).unwrap();
        std::fs::write(d.join("CAs").join("ldap-ca.crt"), &self.ca.pem).unwrap();
        d
    }

    async fn answers(&self) -> bool {
        self.tool(
            "ldapsearch",
            &["-b", SUFFIX, "-s", "base", "(objectClass=*)"],
            None,
        )
        .await
        .is_ok()
    }

    /// Runs an OpenLDAP client tool bound as the directory's admin.
    async fn tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use tokio::io::AsyncWriteExt;
        let url = format!("ldap://127.0.0.1:{}", self.port);
        let mut cmd = tokio::process::Command::new(tool);
        cmd.args(["-x", "-H", &url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .map_err(|_| format!("{tool} hung"))?
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Deletes an entry.
    pub async fn delete(&self, dn: &str) {
        self.tool("ldapdelete", &[dn], None)
            .await
            .unwrap_or_else(|e| panic!("ldapdelete {dn}: {e}"));
    }

    /// Applies an LDIF change (`ldapmodify`).
    pub async fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", &[], Some(ldif))
            .await
            .unwrap_or_else(|e| panic!("ldapmodify: {e}"));
    }

    /// Adds a user.
    pub async fn add_user(&self, uid: &str, password: &str) {
        self.tool("ldapadd", &[], Some(&user_ldif(uid, password)))
            .await
            .unwrap_or_else(|e| panic!("ldapadd {uid}: {e}"));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn user_ldif(uid: &str, password: &str) -> String {
    format!(
        "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n\n",
        user_dn(uid)
    )
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
