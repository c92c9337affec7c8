//! Drive arguments the MinIO way: `/data{1...4}` expands to four paths, several ranges multiply.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EllipsisError {
    #[error("invalid range `{0}`: expected {{a...b}} with a <= b")]
    BadRange(String),
    #[error("unclosed `{{` in `{0}`")]
    Unclosed(String),
}

/// Expands every `{a...b}` range in `arg` (numeric, zero padding kept when `a` has it).
pub fn expand(arg: &str) -> Result<Vec<String>, EllipsisError> {
    let Some(open) = arg.find('{') else {
        return Ok(vec![arg.to_string()]);
    };
    let close = arg[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| EllipsisError::Unclosed(arg.to_string()))?;
    let inner = &arg[open + 1..close];
    let Some((lo, hi)) = inner.split_once("...") else {
        // Not a range: keep the braces literally and expand what follows.
        let rest = expand(&arg[close + 1..])?;
        return Ok(rest
            .into_iter()
            .map(|r| format!("{}{r}", &arg[..=close]))
            .collect());
    };
    let bad = || EllipsisError::BadRange(inner.to_string());
    let a: u64 = lo.parse().map_err(|_| bad())?;
    let b: u64 = hi.parse().map_err(|_| bad())?;
    if a > b || b - a > 4096 {
        return Err(bad());
    }
    let width = if lo.starts_with('0') && lo.len() > 1 {
        lo.len()
    } else {
        0
    };
    let prefix = &arg[..open];
    let suffixes = expand(&arg[close + 1..])?;
    let mut out = Vec::new();
    for n in a..=b {
        for s in &suffixes {
            out.push(format!("{prefix}{n:0width$}{s}"));
        }
    }
    Ok(out)
}

/// Expands every argument and concatenates the results in order.
pub fn expand_all<S: AsRef<str>>(args: &[S]) -> Result<Vec<String>, EllipsisError> {
    let mut out = Vec::new();
    for a in args {
        out.extend(expand(a.as_ref())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_path_is_kept() {
        assert_eq!(expand("/data").unwrap(), vec!["/data"]);
    }

    #[test]
    fn single_range() {
        assert_eq!(expand("/d{1...3}").unwrap(), vec!["/d1", "/d2", "/d3"]);
    }

    #[test]
    fn two_ranges_multiply_in_order() {
        assert_eq!(
            expand("http://n{1...2}/d{1...2}").unwrap(),
            vec![
                "http://n1/d1",
                "http://n1/d2",
                "http://n2/d1",
                "http://n2/d2"
            ]
        );
    }

    #[test]
    fn zero_padding() {
        assert_eq!(expand("d{08...10}").unwrap(), vec!["d08", "d09", "d10"]);
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(matches!(
            expand("d{3...1}"),
            Err(EllipsisError::BadRange(_))
        ));
        assert!(matches!(
            expand("d{a...b}"),
            Err(EllipsisError::BadRange(_))
        ));
        assert!(matches!(expand("d{1...2"), Err(EllipsisError::Unclosed(_))));
    }
}
