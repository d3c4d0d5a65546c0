//! Repository-level promises: the commands the README and CI tell people to run exist.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wg_tests::repo_root;

fn assert_executable(rel: &str) {
    let path = repo_root().join(rel);
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(meta.is_file(), "{rel} is not a regular file");
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{rel} is not executable (chmod +x)"
    );
}

/// README quick start: `scripts/demo.sh` and `scripts/test.sh`; CI: `.ci/run`.
#[test]
fn quick_start_scripts_and_ci_entry_point_exist() {
    assert_executable("scripts/demo.sh");
    assert_executable("scripts/test.sh");
    assert_executable(".ci/run");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect("read .ci/run");
    assert!(
        ci.contains("scripts/test.sh"),
        ".ci/run does not call scripts/test.sh"
    );
}

/// Every `scripts/…` command the README mentions exists and is executable.
#[test]
fn readme_scripts_exist() {
    let readme = repo_root().join("README.md");
    let Ok(text) = std::fs::read_to_string(&readme) else {
        // No README yet: nothing it promises.
        return;
    };
    let mut found = 0;
    for word in text.split(|c: char| c.is_whitespace() || "`()[]<>\"'".contains(c)) {
        let word = word
            .trim_start_matches("./")
            .trim_end_matches([',', '.', ':', ';']);
        let path = Path::new(word);
        if word.starts_with("scripts/") && path.extension().is_some_and(|e| e == "sh") {
            assert_executable(word);
            found += 1;
        } else if word.starts_with("scripts/") && path.extension().is_some() {
            // A document beside the scripts (scripts/vm/README.md): it must exist.
            assert!(
                repo_root().join(path).is_file(),
                "README names {word}, which is missing"
            );
        }
    }
    assert!(
        found > 0 || !text.contains("scripts/"),
        "README mentions scripts/ but no script"
    );
}
