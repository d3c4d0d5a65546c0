//! Documentation and packaging: manual pages, shell completions, systemd units, `install.sh`
//! and the Debian package metadata.
//!
//! The lists checked here come from the code, not from a copy in this file: subcommands from
//! `wg --help`, show fields from the `wg show` usage, `set` options from the `wg set` usage,
//! wg-quick commands from its usage, config keys from the parsers' source, environment variables
//! from the sources' `env::var` literals. Adding any of them without documenting it (and, for
//! the command-line words, completing it) fails here.
//!
//! The shells are really run: bash completion functions are driven with `COMP_WORDS`, zsh's
//! completion system is driven in a pseudo-terminal (`zpty`), fish answers `complete -C`. As
//! root, interface and peer names come from live `wg-tunnel` devices in a sandbox, and config
//! names from a tmpfs over `/etc/wireguard` in the sandbox's private mount namespace.
//!
//! Tools: `groff`, `zsh`, `fish`, `systemd-analyze` (package `systemd`), `man`; `scripts/test.sh`
//! installs them. The `.deb` itself needs a release build, so it is built by `scripts/deb.sh`,
//! which then runs [`built_deb_has_the_files_and_installs_and_removes_cleanly`] on it: exact
//! `dpkg -c` contents and, as root, an install/remove cycle in an overlay (the host keeps its
//! packages). Here CI checks that the package metadata agrees with `install.sh`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use wg_tests::{cargo_bin, our_wg, repo_root, require_root, Sandbox};

// ---------------------------------------------------------------------------------------------
// What the code supports
// ---------------------------------------------------------------------------------------------

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The subcommands listed by `wg --help` (`  name: description` lines).
fn wg_subcommands() -> Vec<String> {
    let out = run(Command::new(our_wg()).arg("--help"));
    assert!(out.status.success(), "wg --help: {out:?}");
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("  ")?.split_once(": "))
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(
        names.len() >= 9,
        "too few subcommands in wg --help: {names:?}"
    );
    names
}

/// The fields of `wg show`: the last `[a | b | …]` group of its usage line.
fn show_fields() -> Vec<String> {
    let out = run(Command::new(our_wg()).args(["show", "--help"]));
    let usage = text(&out.stderr);
    let group = usage
        .rsplit_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(group, _)| group)
        .unwrap_or_else(|| panic!("no [fields] in wg show usage: {usage:?}"));
    let fields: Vec<String> = group.split(" | ").map(|f| f.trim().to_owned()).collect();
    assert!(fields.contains(&"dump".to_owned()), "{fields:?}");
    let mut fields = fields;
    fields.extend(SHOW_EXTENSIONS.iter().map(|f| (*f).to_owned()));
    fields
}

/// `wg show` fields of ours that the usage text does not list (it stays the reference's):
/// documented and completed all the same.
const SHOW_EXTENSIONS: &[&str] = &["paths"];

/// The option words of `wg set`: every `[word` of its usage line.
fn set_options() -> Vec<String> {
    let out = run(Command::new(our_wg()).arg("set"));
    let usage = text(&out.stderr);
    let mut options = Vec::new();
    for piece in usage.split('[').skip(1) {
        let word: String = piece
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if !word.is_empty() && !options.contains(&word) {
            options.push(word);
        }
    }
    assert!(options.contains(&"peer".to_owned()), "{usage:?}");
    options
}

/// The option words of `set` that belong to the interface (before the first `peer`), and
/// those that belong to a peer.
fn set_options_split() -> (Vec<String>, Vec<String>) {
    let options = set_options();
    let peer = options.iter().position(|o| o == "peer").expect("peer");
    (options[..=peer].to_vec(), options[peer + 1..].to_vec())
}

/// The wg-quick commands: the `[ a | b | … ]` group of its usage.
fn wg_quick_commands() -> Vec<String> {
    let out = run(Command::new(cargo_bin("wg-quick")).arg("--help"));
    let usage = text(&out.stdout) + &text(&out.stderr);
    let group = usage
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(group, _)| group)
        .unwrap_or_else(|| panic!("no [ commands ] in wg-quick usage: {usage:?}"));
    let commands: Vec<String> = group.split('|').map(|c| c.trim().to_owned()).collect();
    assert!(commands.contains(&"up".to_owned()), "{commands:?}");
    commands
}

/// Reads a source file of the workspace up to its unit tests (`#[cfg(test)]`).
fn source_without_tests(rel: &str) -> String {
    let text = fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The string literals of `text`, without escapes (enough for key names).
fn string_literals(text: &str) -> Vec<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

/// The wg(8) config keys: the `value_of(&line, "Key=")` calls of the wg-config parser.
fn wg_config_keys() -> Vec<String> {
    let source = source_without_tests("crates/wg-config/src/config.rs");
    let keys: Vec<String> = string_literals(&source)
        .into_iter()
        .filter_map(|s| s.strip_suffix('='))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_owned)
        .collect();
    assert!(keys.len() >= 8, "wg config keys from config.rs: {keys:?}");
    keys
}

/// The wg-quick-only config keys: the match arms `"key" =>` / `"key" if … =>` of the wg-config
/// wg-quick parser (lower case there; keys match without regard to case).
fn wg_quick_config_keys() -> Vec<String> {
    let source = source_without_tests("crates/wg-config/src/quick.rs");
    let mut keys = Vec::new();
    for line in source.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix('"') else {
            continue;
        };
        let Some((key, after)) = rest.split_once('"') else {
            continue;
        };
        let after = after.trim_start();
        if (after.starts_with("=>") || after.starts_with("if "))
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase())
            && !keys.contains(&key.to_owned())
        {
            keys.push(key.to_owned());
        }
    }
    for expected in ["address", "dns", "mtu", "table", "saveconfig"] {
        assert!(
            keys.iter().any(|k| k == expected),
            "key parsing of quick.rs is broken: {keys:?}"
        );
    }
    keys
}

/// Every environment variable the binaries read: `WG_*` and `LOG_LEVEL` literals in the
/// crates' sources outside unit tests.
fn environment_variables() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![repo_root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("read_dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(
                    name,
                    "target" | "tests" | "benches" | "examples" | "interop"
                ) {
                    stack.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") {
                continue;
            }
            let rel = path.strip_prefix(repo_root()).expect("under repo");
            let source = source_without_tests(rel.to_str().expect("utf-8 path"));
            for literal in string_literals(&source) {
                let is_var = literal == "LOG_LEVEL"
                    || (literal.starts_with("WG_")
                        && literal.len() > 3
                        && literal
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
                if is_var {
                    found.insert(literal.to_owned());
                }
            }
        }
    }
    assert!(found.contains("WG_HIDE_KEYS"), "{found:?}");
    found
}

// ---------------------------------------------------------------------------------------------
// Where it must be documented
// ---------------------------------------------------------------------------------------------

const MAN_PAGES: &[&str] = &["man/wg.8", "man/wg-quick.8", "man/wg-tunnel.8"];
const WG_COMPLETIONS: &[&str] = &[
    "completions/bash/wg",
    "completions/zsh/_wg",
    "completions/fish/wg.fish",
];
const WG_QUICK_COMPLETIONS: &[&str] = &[
    "completions/bash/wg-quick",
    "completions/zsh/_wg-quick",
    "completions/fish/wg-quick.fish",
];

fn read(rel: &str) -> String {
    fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A man page's source with the font and hyphen escapes removed, so words read as typed.
fn man(rel: &str) -> String {
    read(rel)
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\e", "\\")
}

/// Whether `word` occurs in `text` as a whole word (not inside a longer name like
/// `listen-port` inside `--listen-port-x`).
fn has_word(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

fn has_word_ignore_case(text: &str, word: &str) -> bool {
    has_word(&text.to_ascii_lowercase(), &word.to_ascii_lowercase())
}

fn missing_from(files: &[&str], words: &[String], load: fn(&str) -> String) -> Vec<String> {
    let mut missing = Vec::new();
    for file in files {
        let content = load(file);
        for word in words {
            if !has_word(&content, word) {
                missing.push(format!("{file}: {word}"));
            }
        }
    }
    missing
}

#[test]
fn wg_subcommands_fields_and_set_options_are_documented_and_completed() {
    let mut words = wg_subcommands();
    words.extend(show_fields());
    words.extend(set_options());
    let mut missing = missing_from(&["man/wg.8"], &words, man);
    missing.extend(missing_from(WG_COMPLETIONS, &words, read));
    assert!(
        missing.is_empty(),
        "not documented/completed:\n{missing:#?}"
    );
}

#[test]
fn wg_quick_commands_are_documented_and_completed() {
    let commands = wg_quick_commands();
    let mut missing = missing_from(&["man/wg-quick.8"], &commands, man);
    missing.extend(missing_from(WG_QUICK_COMPLETIONS, &commands, read));
    assert!(
        missing.is_empty(),
        "not documented/completed:\n{missing:#?}"
    );
}

/// Config keys are documented as `.B Key` entries: the wg(8) keys in wg.8 (and, since a
/// wg-quick file holds them too, mentioned by wg-quick.8 through wg(8)), the wg-quick keys in
/// wg-quick.8. Shells complete command lines, not file contents, so completions hold no keys.
#[test]
fn config_keys_are_documented() {
    let wg_page = man("man/wg.8");
    let quick_page = man("man/wg-quick.8");
    let entry = |page: &str, key: &str| {
        page.lines().any(|line| {
            line.strip_prefix(".B ")
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(key))
        })
    };
    let mut missing = Vec::new();
    for key in wg_config_keys() {
        if !entry(&wg_page, &key) {
            missing.push(format!("man/wg.8: {key}"));
        }
    }
    for key in wg_quick_config_keys() {
        if !entry(&quick_page, &key) {
            missing.push(format!("man/wg-quick.8: {key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "config keys without an entry:\n{missing:#?}"
    );
}

#[test]
fn environment_variables_are_documented() {
    let pages: Vec<String> = MAN_PAGES.iter().map(|p| man(p)).collect();
    let missing: Vec<String> = environment_variables()
        .into_iter()
        .filter(|var| !pages.iter().any(|page| has_word(page, var)))
        .collect();
    assert!(
        missing.is_empty(),
        "environment variables in no man page: {missing:?}"
    );
}

/// The deliberate differences README lists have a place in the man pages too.
#[test]
fn man_pages_describe_differences_and_cross_reference() {
    for page in MAN_PAGES {
        let text = man(page);
        assert!(
            text.contains(".SH DIFFERENCES FROM"),
            "{page}: no DIFFERENCES section"
        );
        assert!(text.contains(".SH SEE ALSO"), "{page}: no SEE ALSO");
        for other in MAN_PAGES.iter().filter(|p| *p != page) {
            let name = other.trim_start_matches("man/").trim_end_matches(".8");
            if name != "wg-tunnel" || *page != "man/wg-tunnel.8" {
                assert!(
                    text.contains(&format!(".BR {name} (8)")),
                    "{page}: SEE ALSO lacks {name}(8)"
                );
            }
        }
    }
    let wg_page = man("man/wg.8");
    for phrase in ["65535", "/etc/services", "--version", "closed pipe"] {
        assert!(
            has_word_ignore_case(&wg_page, phrase) || wg_page.contains(phrase),
            "wg.8 does not mention the README difference about {phrase:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// groff
// ---------------------------------------------------------------------------------------------

#[test]
fn man_pages_render_without_groff_warnings() {
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-ww", "-z"]).current_dir(repo_root());
    cmd.args(MAN_PAGES);
    let out = run(&mut cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff -man -ww -z: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    // And each renders to text with its NAME line (what `man -l` shows first).
    for page in MAN_PAGES {
        let out = run(Command::new("groff")
            .args(["-man", "-ww", "-Tutf8"])
            .arg(repo_root().join(page)));
        let rendered = text(&out.stdout);
        let name = page.trim_start_matches("man/").trim_end_matches(".8");
        assert!(
            out.status.success() && rendered.split_whitespace().any(|w| w == name),
            "{page} rendered: {}",
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// bash
// ---------------------------------------------------------------------------------------------

/// Runs bash completion `function` from `script` with the command line `words` (the last one
/// is the word being completed), in `dir`, optionally inside `sandbox` with `path_dir` first in
/// PATH. Returns COMPREPLY, sorted; panics if bash printed anything on stderr.
fn bash_complete_in(
    script: &str,
    function: &str,
    words: &[&str],
    dir: &Path,
    sandbox: Option<&Sandbox>,
    path_dir: Option<&Path>,
) -> Vec<String> {
    let driver = r#"script=$1 function=$2; shift 2
source "$script" || exit 3
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
    let mut cmd = match sandbox {
        Some(sandbox) => sandbox.command("bash"),
        None => Command::new("bash"),
    };
    let path = match path_dir {
        Some(dir) => format!("{}:{}", dir.display(), wg_tests::invocation::PATH),
        None => wg_tests::invocation::PATH.to_owned(),
    };
    cmd.args(["--norc", "--noprofile", "-c", driver, "bash"])
        .arg(repo_root().join(script))
        .arg(function)
        .args(words)
        .env_clear()
        .env("PATH", path)
        .current_dir(dir);
    let out = run(&mut cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash completion {words:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    let mut reply: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    reply.sort();
    reply
}

fn bash_complete(script: &str, function: &str, words: &[&str]) -> Vec<String> {
    bash_complete_in(script, function, words, &repo_root(), None, None)
}

fn sorted<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    v.sort();
    v
}

#[test]
fn bash_scripts_parse() {
    for script in ["completions/bash/wg", "completions/bash/wg-quick"] {
        let out = run(Command::new("bash").arg("-n").arg(repo_root().join(script)));
        assert!(
            out.status.success(),
            "bash -n {script}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn bash_completes_wg_subcommands_fields_and_set_options() {
    let wg = |words: &[&str]| bash_complete("completions/bash/wg", "_wg", words);
    assert_eq!(wg(&["wg", ""]), sorted(wg_subcommands()));
    assert_eq!(
        wg(&["wg", "s"]),
        ["set", "setconf", "show", "showconf", "syncconf"]
    );
    assert_eq!(wg(&["wg", "show", "wg0", ""]), sorted(show_fields()));
    assert_eq!(
        wg(&["wg", "show", "wg0", "p"]),
        sorted(show_fields().iter().filter(|f| f.starts_with('p')))
    );
    assert_eq!(wg(&["wg", "show", "interfaces", ""]), Vec::<String>::new());
    assert_eq!(wg(&["wg", "genkey", ""]), Vec::<String>::new());

    let (device, peer) = set_options_split();
    assert_eq!(wg(&["wg", "set", "wg0", ""]), sorted(&device));
    // Options already given are not offered again; after a value nothing is offered.
    let rest: Vec<&String> = device.iter().filter(|o| *o != "listen-port").collect();
    assert_eq!(
        wg(&["wg", "set", "wg0", "listen-port", "51820", ""]),
        sorted(rest)
    );
    assert_eq!(
        wg(&["wg", "set", "wg0", "listen-port", ""]),
        Vec::<String>::new()
    );
    let mut peer_options = peer.clone();
    peer_options.push("peer".to_owned());
    assert_eq!(
        wg(&["wg", "set", "wg0", "peer", "KEY", ""]),
        sorted(&peer_options)
    );
    let rest: Vec<&String> = peer_options.iter().filter(|o| *o != "endpoint").collect();
    assert_eq!(
        wg(&[
            "wg",
            "set",
            "wg0",
            "peer",
            "KEY",
            "endpoint",
            "192.0.2.1:1",
            ""
        ]),
        sorted(rest)
    );
    // A new peer starts afresh.
    assert_eq!(
        wg(&["wg", "set", "wg0", "peer", "A", "remove", "peer", "B", ""]),
        sorted(&peer_options)
    );
}

#[test]
fn bash_completes_files_for_conf_commands_and_key_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("tunnel.conf"), "").expect("write");
    fs::write(dir.path().join("tunnel.key"), "").expect("write");
    fs::create_dir(dir.path().join("tunnels")).expect("mkdir");
    let wg = |words: &[&str]| {
        bash_complete_in("completions/bash/wg", "_wg", words, dir.path(), None, None)
    };
    for command in ["setconf", "addconf", "syncconf"] {
        assert_eq!(
            wg(&["wg", command, "wg0", "tun"]),
            ["tunnel.conf", "tunnel.key", "tunnels"],
            "{command}"
        );
    }
    assert_eq!(
        wg(&["wg", "set", "wg0", "private-key", "tunnel.k"]),
        ["tunnel.key"]
    );
    assert_eq!(
        wg(&["wg", "set", "wg0", "peer", "K", "preshared-key", "tunnel.k"]),
        ["tunnel.key"]
    );
    // wg-quick up: *.conf files and directories only.
    let quick = bash_complete_in(
        "completions/bash/wg-quick",
        "_wg_quick",
        &["wg-quick", "up", "tun"],
        dir.path(),
        None,
        None,
    );
    assert_eq!(quick, ["tunnel.conf", "tunnels"]);
}

#[test]
fn bash_completes_wg_quick_commands() {
    let quick = |words: &[&str]| bash_complete("completions/bash/wg-quick", "_wg_quick", words);
    assert_eq!(quick(&["wg-quick", ""]), sorted(wg_quick_commands()));
    assert_eq!(quick(&["wg-quick", "s"]), ["save", "strip"]);
    assert_eq!(quick(&["wg-quick", "up", "wg0", ""]), Vec::<String>::new());
}

/// A directory holding `wg` → our binary, to put first in PATH.
fn path_with_our_wg() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(our_wg(), dir.path().join("wg")).expect("symlink wg");
    // The sandbox's processes must be able to traverse it.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Live names: two wg-tunnel devices with a peer, and config files in a tmpfs over
/// /etc/wireguard, all inside a sandbox; every shell completes them with our `wg`.
#[test]
fn completions_offer_live_interfaces_peers_and_config_names() {
    if !require_root() {
        return;
    }
    assert!(
        Path::new("/etc/wireguard").is_dir(),
        "/etc/wireguard is missing (wireguard-tools creates it; scripts/test.sh installs it)"
    );
    let sandbox = Sandbox::new();
    let _a = sandbox.start_wg_tunnel("wgdocs0");
    let _b = sandbox.start_wg_tunnel("wgdocs1");
    const PEER: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    sandbox
        .run(
            our_wg().to_str().expect("utf-8"),
            &["set", "wgdocs0", "peer", PEER],
        )
        .assert_code(0, "wg set peer");
    sandbox.sh("mount -t tmpfs -o mode=0700 tmpfs /etc/wireguard \
         && : > /etc/wireguard/office.conf && : > /etc/wireguard/home.conf \
         && : > /etc/wireguard/notes.txt");
    let bin = path_with_our_wg();
    let root = Path::new("/");
    let bash = |script: &str, function: &str, words: &[&str]| {
        bash_complete_in(
            script,
            function,
            words,
            root,
            Some(&sandbox),
            Some(bin.path()),
        )
    };
    let interfaces = ["wgdocs0", "wgdocs1"];

    // bash
    let wg = "completions/bash/wg";
    assert_eq!(
        bash(wg, "_wg", &["wg", "show", ""]),
        sorted(["all", "interfaces", "wgdocs0", "wgdocs1"])
    );
    for command in ["showconf", "set", "setconf", "addconf", "syncconf"] {
        assert_eq!(
            bash(wg, "_wg", &["wg", command, "wgd"]),
            interfaces,
            "{command}"
        );
    }
    assert_eq!(
        bash(wg, "_wg", &["wg", "set", "wgdocs0", "peer", ""]),
        [PEER]
    );
    let quick = "completions/bash/wg-quick";
    assert_eq!(
        bash(quick, "_wg_quick", &["wg-quick", "down", ""]),
        interfaces
    );
    // Config names, then *.conf files and directories of the working directory (/ here).
    let up = bash(quick, "_wg_quick", &["wg-quick", "up", ""]);
    assert!(
        up.contains(&"office".to_owned()) && up.contains(&"home".to_owned()),
        "{up:?}"
    );
    assert!(!up.contains(&"notes".to_owned()), "{up:?}");
    assert_eq!(
        bash(quick, "_wg_quick", &["wg-quick", "strip", "of"]),
        ["office"]
    );

    // fish
    let fish = |line: &str| fish_complete_in(line, Some(&sandbox), Some(bin.path()));
    assert_eq!(
        fish("wg show "),
        sorted(["all", "interfaces", "wgdocs0", "wgdocs1"])
    );
    assert_eq!(fish("wg set wgdocs0 peer "), [PEER]);
    assert_eq!(fish("wg-quick down "), interfaces);
    assert_eq!(fish("wg-quick up of"), ["office"]);

    // zsh
    let listed = zsh_complete_in("wg showconf ", Some(&sandbox), Some(bin.path()));
    assert!(
        interfaces.iter().all(|i| listed.contains(*i)),
        "zsh listed {listed:?}"
    );
    let listed = zsh_complete_in("wg-quick up ", Some(&sandbox), Some(bin.path()));
    assert!(
        listed.contains("office") && listed.contains("home"),
        "zsh listed {listed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// zsh and fish
// ---------------------------------------------------------------------------------------------

#[test]
fn zsh_and_fish_scripts_parse() {
    for script in ["completions/zsh/_wg", "completions/zsh/_wg-quick"] {
        let out = run(Command::new("zsh").arg("-n").arg(repo_root().join(script)));
        assert!(
            out.status.success(),
            "zsh -n {script}: {}",
            text(&out.stderr)
        );
    }
    for script in ["completions/fish/wg.fish", "completions/fish/wg-quick.fish"] {
        let out = run(Command::new("fish").arg("-n").arg(repo_root().join(script)));
        assert!(
            out.status.success(),
            "fish -n {script}: {}",
            text(&out.stderr)
        );
    }
}

/// Types `line` and TAB into an interactive zsh (in a pseudo-terminal) whose `fpath` starts
/// with our completions, and returns what was printed, without escape sequences.
const ZSH_DRIVER: &str = r#"zmodload zsh/zpty || exit 2
zpty z zsh -f -i
zpty -w z "PS1='ZPROMPT> '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -D -u; LISTMAX=10000; unsetopt list_ambiguous; print READY''READY"
zpty -r z line '*READYREADY*ZPROMPT> *' || exit 3
zpty -w -n z "$2"$'\t'
zpty -w -n z $'\C-e\C-u'
zpty -w z "print DONE''DONE"
zpty -r z out '*DONEDONE*' || exit 4
print -r -- "$out"
zpty -d z
"#;

fn zsh_complete_in(line: &str, sandbox: Option<&Sandbox>, path_dir: Option<&Path>) -> String {
    let mut cmd = match sandbox {
        Some(sandbox) => sandbox.command("timeout"),
        None => Command::new("timeout"),
    };
    let path = match path_dir {
        Some(dir) => format!("{}:{}", dir.display(), wg_tests::invocation::PATH),
        None => wg_tests::invocation::PATH.to_owned(),
    };
    cmd.args(["30", "zsh", "-f", "-c", ZSH_DRIVER, "zsh"])
        .arg(repo_root().join("completions/zsh"))
        .arg(line)
        .env_clear()
        .env("PATH", path)
        .env("TERM", "dumb")
        .current_dir("/");
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "zsh completion of {line:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    strip_escapes(&text(&out.stdout))
}

/// Removes `ESC [ … letter` sequences and carriage returns.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' | '\x07' | '\x08' => {}
            _ => out.push(c),
        }
    }
    out
}

fn words_of(listing: &str) -> BTreeSet<String> {
    listing.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn zsh_completes_subcommands_fields_and_set_options() {
    let listed = words_of(&zsh_complete_in("wg s", None, None));
    for word in ["set", "setconf", "show", "showconf", "syncconf"] {
        assert!(listed.contains(word), "wg s<TAB>: no {word} in {listed:?}");
    }
    assert!(!listed.contains("genkey"), "{listed:?}");
    let listed = words_of(&zsh_complete_in("wg ", None, None));
    for word in wg_subcommands() {
        assert!(listed.contains(&word), "wg <TAB>: no {word} in {listed:?}");
    }
    let listed = words_of(&zsh_complete_in("wg show wg0 ", None, None));
    for field in show_fields() {
        assert!(
            listed.contains(&field),
            "wg show wg0 <TAB>: no {field} in {listed:?}"
        );
    }
    let (device, peer) = set_options_split();
    let listed = words_of(&zsh_complete_in("wg set wg0 ", None, None));
    for option in device {
        assert!(
            listed.contains(&option),
            "wg set wg0 <TAB>: no {option} in {listed:?}"
        );
    }
    let listed = words_of(&zsh_complete_in("wg set wg0 peer KEY ", None, None));
    for option in peer {
        assert!(
            listed.contains(&option),
            "wg set … peer K <TAB>: no {option} in {listed:?}"
        );
    }
    let listed = words_of(&zsh_complete_in("wg-quick ", None, None));
    for command in wg_quick_commands() {
        assert!(
            listed.contains(&command),
            "wg-quick <TAB>: no {command} in {listed:?}"
        );
    }
}

/// What fish offers for `line` (`complete -C`), first column, sorted. Our completions are put
/// first in the completion path, as `vendor_completions.d` is on an installed system.
fn fish_complete_in(line: &str, sandbox: Option<&Sandbox>, path_dir: Option<&Path>) -> Vec<String> {
    let mut cmd = match sandbox {
        Some(sandbox) => sandbox.command("fish"),
        None => Command::new("fish"),
    };
    let path = match path_dir {
        Some(dir) => format!("{}:{}", dir.display(), wg_tests::invocation::PATH),
        None => wg_tests::invocation::PATH.to_owned(),
    };
    let home = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    cmd.args(["--no-config", "-c"])
        .arg(format!(
            "set fish_complete_path {} $fish_complete_path; complete -C {}",
            repo_root().join("completions/fish").display(),
            fish_quote(line)
        ))
        .env_clear()
        .env("PATH", path)
        .env("HOME", home.path())
        .current_dir("/");
    let out = run(&mut cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "fish completion of {line:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    sorted(
        text(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .filter(|w| !w.is_empty()),
    )
}

fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[test]
fn fish_completes_subcommands_fields_and_set_options() {
    let fish = |line: &str| fish_complete_in(line, None, None);
    assert_eq!(fish("wg "), sorted(wg_subcommands()));
    assert_eq!(
        fish("wg s"),
        ["set", "setconf", "show", "showconf", "syncconf"]
    );
    assert_eq!(fish("wg show wg0 "), sorted(show_fields()));
    let (device, peer) = set_options_split();
    assert_eq!(fish("wg set wg0 "), sorted(&device));
    let mut peer_options = peer.clone();
    peer_options.push("peer".to_owned());
    assert_eq!(fish("wg set wg0 peer KEY "), sorted(&peer_options));
    assert_eq!(fish("wg set wg0 listen-port "), Vec::<String>::new());
    assert_eq!(fish("wg-quick "), sorted(wg_quick_commands()));
    assert_eq!(fish("wg setconf wg0 /etc/host"), fish_files("/etc/host"));
}

/// The files fish itself would list for a path prefix (for comparing file completion).
fn fish_files(prefix: &str) -> Vec<String> {
    let (dir, start) = prefix.rsplit_once('/').expect("a path");
    let mut names = Vec::new();
    for entry in fs::read_dir(format!("{dir}/")).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(start) {
            let slash = if entry.path().is_dir() { "/" } else { "" };
            names.push(format!("{dir}/{name}{slash}"));
        }
    }
    sorted(names)
}

// ---------------------------------------------------------------------------------------------
// install.sh
// ---------------------------------------------------------------------------------------------

/// Runs `scripts/install.sh ARGS` with the debug binaries the test run already has.
fn install(args: &[String]) -> Output {
    let target = wg_tests::bins::target_dir();
    let cargo_target = target.parent().expect("target/<profile> has a parent");
    let mut cmd = Command::new(repo_root().join("scripts/install.sh"));
    cmd.args(args)
        .arg(format!(
            "PROFILE={}",
            if target.ends_with("debug") {
                "dev"
            } else {
                "release"
            }
        ))
        .env("CARGO_TARGET_DIR", cargo_target)
        .current_dir(repo_root());
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    out
}

/// Every file under `root`, as absolute paths inside it, with its mode.
fn tree(root: &Path) -> Vec<(String, u32)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let rel = format!(
                "/{}",
                path.strip_prefix(root).expect("under root").display()
            );
            if meta.is_dir() {
                stack.push(path);
                if fs::read_dir(root.join(&rel[1..]))
                    .expect("read_dir")
                    .next()
                    .is_none()
                {
                    files.push((format!("{rel}/"), meta.permissions().mode() & 0o7777));
                }
            } else {
                files.push((rel, meta.permissions().mode() & 0o7777));
            }
        }
    }
    files.sort();
    files
}

/// What `install.sh PREFIX=/usr` installs: where Debian's wireguard-tools puts its files.
const DEBIAN_LAYOUT: &[(&str, u32)] = &[
    ("/etc/wireguard/", 0o700),
    ("/lib/systemd/system/wg-quick.target", 0o644),
    ("/lib/systemd/system/wg-quick@.service", 0o644),
    ("/lib/systemd/system/wg-tunnel@.service", 0o644),
    ("/usr/bin/wg", 0o755),
    ("/usr/bin/wg-quick", 0o755),
    ("/usr/bin/wg-relay", 0o755),
    ("/usr/bin/wg-tunnel", 0o755),
    ("/usr/share/bash-completion/completions/wg", 0o644),
    ("/usr/share/bash-completion/completions/wg-quick", 0o644),
    ("/usr/share/fish/vendor_completions.d/wg-quick.fish", 0o644),
    ("/usr/share/fish/vendor_completions.d/wg.fish", 0o644),
    ("/usr/share/man/man8/wg-quick.8", 0o644),
    ("/usr/share/man/man8/wg-relay.8", 0o644),
    ("/usr/share/man/man8/wg-tunnel.8", 0o644),
    ("/usr/share/man/man8/wg.8", 0o644),
    ("/usr/share/zsh/vendor-completions/_wg", 0o644),
    ("/usr/share/zsh/vendor-completions/_wg-quick", 0o644),
];

#[test]
fn install_sh_installs_the_debian_layout() {
    let dest = tempfile::tempdir().expect("tempdir");
    let out = install(&[
        format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/usr".to_owned(),
    ]);
    let expected: Vec<(String, u32)> = DEBIAN_LAYOUT
        .iter()
        .map(|(p, m)| ((*p).to_owned(), *m))
        .collect();
    assert_eq!(tree(dest.path()), expected);
    // It lists what it installed, one path a line.
    let listed = sorted(text(&out.stdout).lines());
    assert_eq!(listed, sorted(DEBIAN_LAYOUT.iter().map(|(p, _)| *p)));
    // Files are copied as they are; the binaries are ours.
    for (installed, source) in [
        ("usr/share/man/man8/wg.8", "man/wg.8"),
        (
            "lib/systemd/system/wg-quick@.service",
            "systemd/wg-quick@.service",
        ),
        (
            "usr/share/zsh/vendor-completions/_wg",
            "completions/zsh/_wg",
        ),
    ] {
        assert_eq!(
            fs::read(dest.path().join(installed)).expect("installed"),
            fs::read(repo_root().join(source)).expect("source"),
            "{installed}"
        );
    }
    // (Compared by behaviour, not bytes: the build may be replaced while the test runs.)
    let version = run(Command::new(dest.path().join("usr/bin/wg")).arg("--version"));
    assert!(text(&version.stdout).contains("(wg-rs "), "{version:?}");
}

#[test]
fn install_sh_honours_prefix_and_directory_settings() {
    let dest = tempfile::tempdir().expect("tempdir");
    install(&[
        format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/opt/wg".to_owned(),
        "MANDIR=/opt/man".to_owned(),
        "FISHCOMPDIR=/opt/fish".to_owned(),
    ]);
    let paths: Vec<String> = tree(dest.path()).into_iter().map(|(p, _)| p).collect();
    for expected in [
        "/opt/wg/bin/wg-quick",
        "/opt/man/man8/wg.8",
        "/opt/wg/share/bash-completion/completions/wg",
        "/opt/wg/share/zsh/site-functions/_wg",
        "/opt/fish/wg.fish",
        "/opt/wg/lib/systemd/system/wg-quick@.service",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "no {expected} in {paths:#?}"
        );
    }
    // The units run the binaries where they were installed.
    let unit = fs::read_to_string(
        dest.path()
            .join("opt/wg/lib/systemd/system/wg-quick@.service"),
    )
    .expect("unit");
    assert!(
        unit.contains("ExecStart=/opt/wg/bin/wg-quick up %i"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/bin/"), "{unit}");
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

/// `(section, key, value)` lines of a unit file, in order, without comments.
fn unit_entries(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in read(rel).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: {line}"));
            entries.push((section.clone(), key.to_owned(), value.to_owned()));
        }
    }
    entries
}

/// compat.md §5.6 (HEAD): the wg-quick@ unit, key by key (Documentation= lines are ours).
#[test]
fn wg_quick_unit_matches_the_reference_unit() {
    let entries: Vec<(String, String, String)> = unit_entries("systemd/wg-quick@.service")
        .into_iter()
        .filter(|(_, key, _)| key != "Documentation")
        .collect();
    let expected = [
        ("Unit", "Description", "WireGuard via wg-quick(8) for %I"),
        ("Unit", "After", "network-online.target nss-lookup.target"),
        ("Unit", "Wants", "network-online.target nss-lookup.target"),
        ("Unit", "PartOf", "wg-quick.target"),
        ("Unit", "Before", "wg-quick.target"),
        ("Service", "Type", "oneshot"),
        ("Service", "RemainAfterExit", "yes"),
        ("Service", "ExecStart", "/usr/bin/wg-quick up %i"),
        ("Service", "ExecStop", "/usr/bin/wg-quick down %i"),
        (
            "Service",
            "ExecReload",
            "/bin/bash -c 'exec /usr/bin/wg syncconf %i <(exec /usr/bin/wg-quick strip %i)'",
        ),
        (
            "Service",
            "Environment",
            "WG_ENDPOINT_RESOLUTION_RETRIES=infinity",
        ),
        ("Install", "WantedBy", "multi-user.target wg-quick.target"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(s, k, v)| ((*s).to_owned(), (*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(entries, expected);
    assert!(unit_entries("systemd/wg-quick@.service")
        .iter()
        .any(|(_, k, v)| k == "Documentation" && v == "man:wg-quick(8)"));
    assert_eq!(
        unit_entries("systemd/wg-quick.target"),
        [(
            "Unit".to_owned(),
            "Description".to_owned(),
            "WireGuard Tunnels via wg-quick(8)".to_owned()
        )]
    );
}

/// The wg-tunnel@ unit: readiness by forking, and the sandbox the device needs and no more.
#[test]
fn wg_tunnel_unit_is_sandboxed_for_what_the_device_needs() {
    let entries = unit_entries("systemd/wg-tunnel@.service");
    let get = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("Type"), ["forking"]);
    assert_eq!(get("ExecStart"), ["/usr/bin/wg-tunnel %i"]);
    assert_eq!(
        get("CapabilityBoundingSet"),
        ["CAP_NET_ADMIN CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(get("DeviceAllow"), ["/dev/net/tun rw"]);
    assert_eq!(get("DevicePolicy"), ["closed"]);
    // The socket directory the device writes (wg-tunnel's SOCKET_DIR), shared by all devices.
    let socket_dir = source_without_tests("crates/wg-tunnel/src/uapi_server.rs");
    assert!(
        socket_dir.contains("\"/var/run/wireguard\""),
        "socket dir moved?"
    );
    assert_eq!(get("RuntimeDirectory"), ["wireguard"]);
    assert_eq!(get("RuntimeDirectoryPreserve"), ["yes"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    // LOG_LEVEL set (not silent) keeps stderr, so errors reach the journal after detaching.
    assert_eq!(
        get("Environment")
            .iter()
            .filter(|v| v.starts_with("LOG_LEVEL="))
            .count(),
        1
    );
    assert!(!get("Environment").contains(&"LOG_LEVEL=silent"));
}

#[test]
fn systemd_analyze_verifies_the_installed_units() {
    // Installed under a temporary PREFIX so that the units point at binaries that exist.
    let dest = tempfile::tempdir().expect("tempdir");
    let prefix = dest.path().join("usr");
    install(&[format!("PREFIX={}", prefix.display())]);
    let units = prefix.join("lib/systemd/system");
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify")
        .args(["wg-quick@.service", "wg-quick.target", "wg-tunnel@.service"].map(|u| units.join(u)))
        // Documentation=man:… pages are looked up with man(1).
        .env("MANPATH", prefix.join("share/man"));
    let out = run(&mut cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    // The device unit is well sandboxed by systemd's own measure (0 = best, 10 = worst).
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(units.join("wg-tunnel@.service")));
    assert!(
        out.status.success(),
        "systemd-analyze security: {}",
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    let level: f64 = report
        .split("Overall exposure level for wg-tunnel@")
        .nth(1)
        .and_then(|s| s.split(": ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {report}"));
    assert!(
        level <= 3.0,
        "wg-tunnel@.service exposure {level}\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Debian package
// ---------------------------------------------------------------------------------------------

/// The `[source, dest, mode]` assets of `[package.metadata.deb]` in crates/wg/Cargo.toml.
fn deb_assets() -> Vec<(String, String, String)> {
    let manifest = read("crates/wg/Cargo.toml");
    let section = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("crates/wg/Cargo.toml has [package.metadata.deb]");
    let assets = section
        .split("assets = [")
        .nth(1)
        .and_then(|s| s.split("\n]").next())
        .expect("assets = [ … ]");
    assets
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let parts = string_literals(l);
            assert_eq!(parts.len(), 3, "asset {l}");
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        })
        .collect()
}

/// Where each asset lands, as `dpkg -c` shows it (man pages gzipped by cargo-deb).
fn deb_paths() -> Vec<(String, u32)> {
    let mut paths: Vec<(String, u32)> = deb_assets()
        .into_iter()
        .map(|(source, dest, mode)| {
            let name = source.rsplit('/').next().expect("name");
            let mut path = format!("/{dest}{name}");
            if path.starts_with("/usr/share/man/") {
                path.push_str(".gz");
            }
            (path, u32::from_str_radix(&mode, 8).expect("octal mode"))
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn deb_metadata_matches_the_install_layout() {
    let manifest_dir = repo_root().join("crates/wg");
    for (source, _, _) in deb_assets() {
        if let Some(bin) = source.strip_prefix("target/release/") {
            assert!(
                ["wg", "wg-quick", "wg-tunnel", "wg-relay"].contains(&bin),
                "unknown binary asset {source}"
            );
        } else {
            assert!(
                manifest_dir.join(&source).is_file(),
                "asset {source} does not exist"
            );
        }
    }
    // The package holds what `install.sh PREFIX=/usr` installs (bar /etc/wireguard, made by
    // postinst), plus the README.
    let mut expected: Vec<(String, u32)> = DEBIAN_LAYOUT
        .iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(p, m)| {
            let mut p = (*p).to_owned();
            if p.starts_with("/usr/share/man/") {
                p.push_str(".gz");
            }
            (p, *m)
        })
        .collect();
    expected.push(("/usr/share/doc/wg-rs/README.md".to_owned(), 0o644));
    expected.sort();
    assert_eq!(deb_paths(), expected);
    let manifest = read("crates/wg/Cargo.toml");
    for line in [
        "conflicts = \"wireguard-tools\"",
        "replaces = \"wireguard-tools\"",
        "maintainer-scripts = \"debian/\"",
    ] {
        assert!(manifest.contains(line), "deb metadata lacks {line}");
    }
    for script in ["postinst", "postrm"] {
        let path = manifest_dir.join("debian").join(script);
        let out = run(Command::new("sh").arg("-n").arg(&path));
        assert!(
            out.status.success(),
            "sh -n {script}: {}",
            text(&out.stderr)
        );
        let mode = fs::metadata(&path).expect(script).permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
}

/// `dpkg -c` of the built package lists exactly the expected files; as root, it installs over
/// wireguard-tools and removes cleanly, in an overlay of /usr, /etc and /var inside a private
/// mount namespace (the host keeps its own packages).
#[test]
fn built_deb_has_the_files_and_installs_and_removes_cleanly() {
    // The .deb needs a release build, so `cargo test` alone checks the metadata above, and
    // `scripts/deb.sh` (the last stage of scripts/test.sh, so every CI run) runs this test on
    // the package it has just built.
    let Some(deb) = std::env::var_os("WG_RS_DEB_FILE").map(PathBuf::from) else {
        eprintln!("not checked: no package given (scripts/deb.sh builds one and runs this test)");
        return;
    };
    let out = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(out.status.success(), "dpkg-deb -c: {}", text(&out.stderr));
    let files: Vec<(String, u32)> = sorted(text(&out.stdout).lines())
        .into_iter()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let mode = &line[1..10];
            let bits = mode
                .chars()
                .fold(0u32, |acc, c| (acc << 1) | u32::from(c != '-'));
            let path = line
                .rsplit(' ')
                .next()
                .expect("path")
                .trim_start_matches('.');
            (path.to_owned(), bits)
        })
        .collect();
    let mut files = files;
    files.sort();
    let mut expected = deb_paths();
    expected.push(("/usr/share/doc/wg-rs/copyright".to_owned(), 0o644));
    expected.sort();
    assert_eq!(files, expected);

    if !require_root() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = r#"set -e
scratch=$1 deb=$2
mount -t tmpfs tmpfs "$scratch"
for d in usr etc var; do
	mkdir -p "$scratch/$d.up" "$scratch/$d.work"
	mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/$d.up,workdir=$scratch/$d.work" "/$d"
done
export DEBIAN_FRONTEND=noninteractive
dpkg -i "$deb" >/dev/null
dpkg-query -W -f='${Status}\n' wg-rs
wg --version
test -d /etc/wireguard && stat -c %a /etc/wireguard
dpkg --audit
man -w wg-tunnel
dpkg -r wg-rs >/dev/null
for f in /usr/bin/wg /usr/bin/wg-quick /usr/bin/wg-tunnel /lib/systemd/system/wg-quick@.service; do
	if test -e "$f"; then echo "left behind: $f"; fi
done
dpkg --purge wg-rs >/dev/null
dpkg-query -W -f='${Status}\n' wg-rs 2>&1 || true
dpkg --audit
"#;
    let out = run(Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "bash",
        ])
        .arg(scratch.path())
        .arg(&deb));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "install/remove cycle: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "install ok installed", "{stdout}");
    assert!(lines[1].contains("(wg-rs "), "{stdout}");
    assert_eq!(lines[2], "700", "{stdout}");
    assert_eq!(lines[3], "/usr/share/man/man8/wg-tunnel.8.gz", "{stdout}");
    assert!(!stdout.contains("left behind"), "{stdout}");
    assert!(
        lines[4].contains("not-installed") || lines[4].contains("no packages found"),
        "{stdout}"
    );
    assert_eq!(lines.len(), 5, "{stdout}");
}

/// The capabilities `wg-tunnel@.service` leaves the device are enough: wg-tunnel started with
/// only the unit's `CapabilityBoundingSet` (and no_new_privs), in a sandbox, creates its
/// interface and socket and takes a privileged listen port, a fwmark, an MTU change and a peer.
#[test]
fn wg_tunnel_runs_with_only_the_units_capabilities() {
    if !require_root() {
        return;
    }
    let entries = unit_entries("systemd/wg-tunnel@.service");
    let caps: Vec<String> = entries
        .iter()
        .find(|(_, key, _)| key == "CapabilityBoundingSet")
        .expect("CapabilityBoundingSet")
        .2
        .split_whitespace()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let bounding = format!("--bounding-set=-all,{}", caps.join(","));
    let tunnel = wg_tests::our_wg_tunnel();
    let sandbox = Sandbox::new();
    let options = [
        bounding.as_str(),
        "--inh-caps=-all",
        "--no-new-privs",
        tunnel.to_str().expect("utf-8 path"),
        "-f",
    ];
    let mut device =
        sandbox.start_userspace_with(Path::new("/usr/bin/setpriv"), &options, "wgcaps0");
    let status = fs::read_to_string(format!("/proc/{}/status", device.pid())).expect("status");
    let bounding_set = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim);
    // CAP_NET_BIND_SERVICE is bit 10, CAP_NET_ADMIN bit 12.
    assert_eq!(
        bounding_set,
        Some("0000000000001400"),
        "wg-tunnel's capability bounding set"
    );
    let wg = our_wg();
    let wg = wg.to_str().expect("utf-8 path");
    sandbox.sh(&format!(
        "umask 077 && {wg} genkey > /run/key && {wg} set wgcaps0 listen-port 443 fwmark 0x51 \
         private-key /run/key peer hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo= \
         endpoint 127.0.0.1:51820 allowed-ips 10.9.0.0/24 && ip link set wgcaps0 mtu 1380 up"
    ));
    let shown = sandbox.run(wg, &["show", "wgcaps0", "dump"]);
    shown.assert_code(0, "wg show dump");
    let first = shown.stdout_str();
    let fields: Vec<&str> = first.lines().next().unwrap_or("").split('\t').collect();
    assert_eq!(fields.get(2..4), Some(&["443", "0x51"][..]), "{first}");
    assert!(first.contains("127.0.0.1:51820\t10.9.0.0/24"), "{first}");
    assert!(
        device.try_status().is_none(),
        "wg-tunnel died:\n{}",
        device.log()
    );
}

/// wg-tunnel's options, from its usage line (`Usage: wg-tunnel [-f/--foreground] …`).
#[test]
fn wg_tunnel_options_are_documented() {
    let out = run(&mut Command::new(wg_tests::our_wg_tunnel()));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let usage = text(&out.stderr);
    let options: Vec<String> = usage
        .split(|c: char| c.is_whitespace() || "[]/".contains(c))
        .filter(|w| w.starts_with('-'))
        .map(str::to_owned)
        .collect();
    assert!(options.contains(&"--foreground".to_owned()), "{usage:?}");
    let missing = missing_from(&["man/wg-tunnel.8"], &options, man);
    assert!(missing.is_empty(), "not documented: {missing:?}");
}
