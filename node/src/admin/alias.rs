//! Named endpoints for `cairn admin`, kept the way `mc` keeps them: `cairn admin alias set ALIAS URL
//! ACCESS SECRET` once, then every command names the alias. The file holds secrets, so it is
//! written owner-only, through a temp file and a rename. As `mc` takes `MC_HOST_<alias>`, an
//! alias may instead come from the environment, `CAIRN_HOST_<ALIAS>=http(s)://ACCESS:SECRET@HOST:PORT`
//! (it wins over the file): a container with no writable home (the images are `FROM scratch`)
//! runs `cairn admin` with it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where a command is sent and who signs it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default = "default_region")]
    pub region: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Aliases {
    #[serde(default)]
    pub aliases: BTreeMap<String, Target>,
}

/// `$CAIRN_CONFIG_DIR/config.json`, else `~/.cairn/config.json`.
pub fn config_path() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("CAIRN_CONFIG_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cairn"),
    };
    Ok(dir.join("config.json"))
}

impl Aliases {
    pub fn load() -> anyhow::Result<Self> {
        let path = config_path()?;
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not a valid alias file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let path = config_path()?;
        let dir = path.parent().context("config path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)?;
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// The target of `alias`; also accepts `ALIAS/BUCKET...` and ignores what follows the alias.
    pub fn resolve(&self, alias: &str) -> anyhow::Result<Target> {
        let name = alias.split('/').next().unwrap_or(alias);
        if let Some(value) = std::env::var_os(format!("{HOST_ENV}{name}")) {
            return from_env(name, &value.to_string_lossy());
        }
        self.aliases.get(name).cloned().with_context(|| {
            format!(
                "no alias {name:?}: add it with `cairn admin alias set {name} URL ACCESS SECRET`"
            )
        })
    }
}

/// The prefix of the variables naming an alias's URL and credentials.
const HOST_ENV: &str = "CAIRN_HOST_";

/// Alias `name` from `CAIRN_HOST_<name>`'s `value`, `http(s)://ACCESS:SECRET@HOST:PORT` with
/// the keys percent-encoded as needed. Errors never repeat the value: it holds a secret.
fn from_env(name: &str, value: &str) -> anyhow::Result<Target> {
    let bad = || {
        anyhow::anyhow!(
            "{HOST_ENV}{name} must be http(s)://ACCESS:SECRET@HOST:PORT (keys percent-encoded)"
        )
    };
    let (scheme, rest) = value.split_once("://").ok_or_else(bad)?;
    let (userinfo, host) = rest.rsplit_once('@').ok_or_else(bad)?;
    let (access_key, secret_key) = userinfo.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad())
    };
    let (access_key, secret_key) = (decode(access_key)?, decode(secret_key)?);
    let url = format!("{scheme}://{}", host.trim_end_matches('/'));
    if access_key.is_empty() || secret_key.is_empty() || validate(name, &url).is_err() {
        return Err(bad());
    }
    Ok(Target {
        url,
        access_key,
        secret_key,
        region: default_region(),
    })
}

/// Splits `ALIAS/BUCKET` into the bucket (error naming the expected form when absent).
pub fn bucket_of(target: &str) -> anyhow::Result<&str> {
    match target.split_once('/') {
        Some((_, b)) if !b.trim_matches('/').is_empty() => Ok(b.trim_matches('/')),
        _ => anyhow::bail!("expected ALIAS/BUCKET, got {target:?}"),
    }
}

/// Checks an alias name and URL before they are stored.
pub fn validate(alias: &str, url: &str) -> anyhow::Result<()> {
    if alias.is_empty() || alias.contains('/') {
        anyhow::bail!("alias name {alias:?} must be non-empty and contain no '/'");
    }
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(()),
        _ => anyhow::bail!("URL {url:?} must look like http://HOST:PORT or https://HOST:PORT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_names_the_missing_alias_and_strips_the_bucket() {
        let mut a = Aliases::default();
        a.aliases.insert(
            "site1".into(),
            Target {
                url: "http://127.0.0.1:9000".into(),
                access_key: "admin".into(),
                secret_key: "secret123".into(),
                region: default_region(),
            },
        );
        assert_eq!(
            a.resolve("site1/bucket").unwrap().url,
            "http://127.0.0.1:9000"
        );
        let e = a.resolve("other").unwrap_err().to_string();
        assert!(e.contains("other"), "{e}");
        assert!(!format!("{:?}", a.resolve("site1").unwrap()).contains("secret123"));
        assert_eq!(bucket_of("site1/b1").unwrap(), "b1");
        assert!(bucket_of("site1").is_err());
    }

    #[test]
    fn an_alias_from_the_environment_is_parsed_and_never_echoed() {
        let t = from_env("b", "https://root:s%40cr%3Aet@b1.example:9000/").unwrap();
        assert_eq!(t.url, "https://b1.example:9000");
        assert_eq!(
            (t.access_key.as_str(), t.secret_key.as_str()),
            ("root", "s@cr:et")
        );
        for bad in [
            "b1:9000",
            "http://b1:9000",
            "http://rootonly@b1:9000",
            "ftp://root:topsecret@b1",
            "http://:topsecret@b1:9000",
            "http://root:topsecret%ff@b1:9000",
        ] {
            let e = from_env("b", bad).unwrap_err().to_string();
            assert!(
                e.contains("CAIRN_HOST_b") && !e.contains("topsecret"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn validate_rejects_bad_names_and_urls() {
        assert!(validate("a", "http://h:1").is_ok());
        assert!(validate("a/b", "http://h:1").is_err());
        assert!(validate("a", "ftp://h").is_err());
        assert!(validate("a", "not a url").is_err());
    }
}
