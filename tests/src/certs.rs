//! Test certificates: a site CA and node certificates it signs (for 127.0.0.1 and localhost), laid
//! out as `cairn server --certs-dir` expects (`public.crt`, `private.key`, `CAs/ca.crt`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        TestCa { issuer, pem }
    }

    /// A certificate for `common_name` valid for 127.0.0.1 and localhost, usable by servers and
    /// clients (nodes are both to each other): (certificate PEM, key PEM).
    pub fn issue(&self, common_name: &str) -> (String, String) {
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a certs directory for one node at `dir` and returns it.
    pub fn write_node_dir(&self, dir: &Path, common_name: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("CAs")).unwrap();
        let (cert, key) = self.issue(common_name);
        write_pair(dir, &cert, &key);
        std::fs::write(dir.join("CAs").join("ca.crt"), &self.pem).unwrap();
        dir.to_path_buf()
    }
}

/// Replaces `public.crt`/`private.key` in `dir` (key first, each through a rename, so a reload
/// never sees a half-written file).
pub fn write_pair(dir: &Path, cert: &str, key: &str) {
    for (name, body) in [("private.key", key), ("public.crt", cert)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// The KES identity of the certificate in `dir` (hex SHA-256 of its public key, as `kes identity
/// of` prints and `CAIRN_KES_IDENTITIES` lists).
pub fn kes_identity(dir: &Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let pem = std::fs::read_to_string(dir.join("private.key")).unwrap();
    // `public_key_pem` is the SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    let spki_pem = KeyPair::from_pem(&pem).unwrap().public_key_pem();
    let b64: String = spki_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    hex::encode(sha2::Sha256::digest(spki))
}

/// The CA that `dir` trusts (`CAs/*.crt`), else its own certificate: what a client must trust.
pub fn trusted_pem(dir: &Path) -> Vec<u8> {
    let ca = dir.join("CAs").join("ca.crt");
    std::fs::read(&ca).unwrap_or_else(|_| std::fs::read(dir.join("public.crt")).unwrap())
}
