//! The `cairn` binary's command line: bad input is refused with a message naming the problem.
//! (Full black-box tests of a running server live in the top-level `tests/` package.)

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

#[test]
fn parity_too_high_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let drives: Vec<String> = (1..=4)
        .map(|i| dir.path().join(format!("d{i}")).display().to_string())
        .collect();
    let out = cairn()
        .arg("server")
        .arg("--parity")
        .arg("3")
        .args(&drives)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parity 3 is too high"), "stderr: {err}");
}

#[test]
fn bad_ellipsis_is_refused() {
    let out = cairn().args(["server", "/tmp/x{3...1}"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid range"));
}

#[test]
fn missing_parent_is_refused() {
    let out = cairn()
        .args(["server", "/nonexistent-parent-dir/cairn/data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parent directory does not exist"));
}
