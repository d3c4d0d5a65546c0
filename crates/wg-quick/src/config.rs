//! Finding and reading the configuration file (`parse_options`): an interface name means
//! `/etc/wireguard/NAME.conf`, anything else is a path; the file name must be a valid
//! interface name followed by `.conf`; a world-accessible file is warned about.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use wg_config::quick::{QuickConfig, QuickParser};

/// A configuration file, found and parsed.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    /// The canonical path (`readlink -f`).
    pub(crate) path: PathBuf,
    /// The interface name: the file name without `.conf`.
    pub(crate) interface: String,
    /// The parsed contents.
    pub(crate) config: QuickConfig,
}

/// Whether `name` matches `^[a-zA-Z0-9_=+.-]{1,15}$`.
pub(crate) fn is_interface_name(name: &[u8]) -> bool {
    (1..=15).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
}

/// Bytes as the chars of the same value, so any file goes through the `&str` parser and comes
/// back byte for byte with [`unlatin1`].
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The inverse of [`latin1`].
pub(crate) fn unlatin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// Resolves, checks and parses the file named by the command-line argument. `Err` holds the
/// message for `die`. The world-accessible warning is printed here.
pub(crate) fn load(arg: &OsStr) -> Result<ConfigFile, String> {
    let mut path = PathBuf::from(arg);
    if is_interface_name(arg.as_bytes()) {
        let mut name = b"/etc/wireguard/".to_vec();
        name.extend_from_slice(arg.as_bytes());
        name.extend_from_slice(b".conf");
        path = PathBuf::from(OsStr::from_bytes(&name));
    }
    let shown = latin1(path.as_os_str().as_bytes());
    if !path.exists() {
        return Err(format!("`{shown}' does not exist"));
    }
    let bytes = path.as_os_str().as_bytes();
    let base = &bytes[bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
    let interface = match base.strip_suffix(b".conf") {
        Some(stem) if is_interface_name(stem) => latin1(stem),
        _ => {
            return Err("The config file must be a valid interface name, followed by .conf".into())
        }
    };
    let path = fs::canonicalize(&path).map_err(|e| format!("`{shown}': {e}"))?;
    warn_if_world_accessible(&path);
    let mut text = fs::read(&path).map_err(|e| format!("`{shown}': {e}"))?;
    // bash's `read` silently drops NUL bytes.
    text.retain(|&b| b != 0);
    let config = QuickParser::parse_str(&latin1(&text)).map_err(|e| e.to_string())?;
    Ok(ConfigFile {
        path,
        interface,
        config,
    })
}

/// `Warning: `PATH' is world accessible` when the file and its directory both grant others
/// some permission.
fn warn_if_world_accessible(path: &Path) {
    let mode = |p: &Path| fs::metadata(p).map_or(0, |m| m.permissions().mode());
    let dir = path.parent().unwrap_or(Path::new("/"));
    if mode(path) & mode(dir) & 0o007 != 0 {
        let mut text = b"Warning: `".to_vec();
        text.extend_from_slice(path.as_os_str().as_bytes());
        text.extend_from_slice(b"' is world accessible\n");
        crate::exec::stderr(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn test_interface_names() {
        assert!(is_interface_name(b"wg0"));
        assert!(is_interface_name(b"a=b+c.d-e_f"));
        assert!(is_interface_name(b"123456789012345"));
        assert!(!is_interface_name(b"1234567890123456"));
        assert!(!is_interface_name(b""));
        assert!(!is_interface_name(b"wg/0"));
        assert!(!is_interface_name(b"wg 0"));
    }

    #[test]
    fn test_load() {
        let dir = std::env::temp_dir().join(format!("wg-quick-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let file = dir.join("wg7.conf");
        let mut f = fs::File::create(&file).unwrap();
        f.write_all(b"[Interface]\nAddress = 10.0.0.1/24\nListen\0Port = 1\n[Peer]\r\n# \xff")
            .unwrap();
        let loaded = load(file.as_os_str()).unwrap();
        assert_eq!(loaded.interface, "wg7");
        assert_eq!(loaded.path, fs::canonicalize(&file).unwrap());
        assert_eq!(
            unlatin1(&loaded.config.wg_config),
            b"[Interface]\nListenPort = 1\n[Peer]\r\n# \xff\n"
        );

        let missing = dir.join("nope.conf");
        assert_eq!(
            load(missing.as_os_str()).unwrap_err(),
            format!("`{}' does not exist", missing.display())
        );
        let long = dir.join("this-name-is-too-long.conf");
        fs::write(&long, "").unwrap();
        assert_eq!(
            load(long.as_os_str()).unwrap_err(),
            "The config file must be a valid interface name, followed by .conf"
        );
        let bad = dir.join("wg8.conf");
        fs::write(&bad, "[Interface]\nSaveConfig = maybe\n").unwrap();
        assert_eq!(
            load(bad.as_os_str()).unwrap_err(),
            "`maybe' is neither true nor false"
        );
        // A bare name is looked for in /etc/wireguard.
        assert_eq!(
            load(OsStr::new("wg-rs-test-none")).unwrap_err(),
            "`/etc/wireguard/wg-rs-test-none.conf' does not exist"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
