//! A private `/etc` and a real resolvconf (Debian's openresolv) inside a [`Sandbox`], for the
//! wg-quick tests.
//!
//! ```text
//!   host:   /etc, /usr/sbin, /usr/lib untouched; openresolv unpacked (not installed) in
//!           target/openresolv by scripts/test.sh (`apt-get download` + `dpkg-deb -x`)
//!
//!   sandbox mount namespace (private):
//!     /etc       overlay: lower = host /etc, upper = /run/.wg-tests/etc (the sandbox's tmpfs)
//!       /etc/resolv.conf      a fresh regular file, START_RESOLV_CONF
//!       /etc/resolvconf.conf  openresolv's Debian default (resolv_conf=/etc/resolv.conf)
//!       /etc/wireguard        a private, empty tmpfs (mode 0700) for the `wg-quick up NAME` form
//!     /usr/sbin  overlay: lower = target/openresolv/sbin : host /usr/sbin   (adds resolvconf),
//!                upper = /run/.wg-tests/sbin (so `nft` can be hidden: `without_nft`)
//!     /usr/lib   overlay: lower = target/openresolv/lib : host /usr/lib     (/lib/resolvconf)
//!     /run/resolvconf       openresolv's state, on the sandbox's own tmpfs /run
//! ```
//!
//! Nothing is written to the host: every write lands in an overlay's upper directory on the
//! sandbox's tmpfs, which disappears with the sandbox. The script runs under `set -e` and
//! checks that `/etc` and `/usr/sbin` really are the overlays before writing or removing
//! anything there.
//!
//! Without openresolv ([`PrivateEtc::without_resolvconf`]) the sandbox has no `resolvconf`
//! anywhere in `PATH`: that is how the "missing resolvconf" failure is injected.

use std::path::PathBuf;

use crate::sandbox::Sandbox;

/// The sandbox's `/etc/resolv.conf` before any test touches it.
pub const START_RESOLV_CONF: &str = "nameserver 192.0.2.53\nsearch sandbox.invalid\n";

/// Where scripts/test.sh unpacked openresolv (`target/openresolv`), or `WG_TESTS_OPENRESOLV`.
pub fn openresolv_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("WG_TESTS_OPENRESOLV") {
        return PathBuf::from(dir);
    }
    // target/<profile>/ → target/
    let target = crate::bins::target_dir();
    target
        .parent()
        .expect("target/<profile> has a parent")
        .join("openresolv")
}

/// Panics, saying how to get it, unless openresolv is unpacked.
fn require_openresolv() -> PathBuf {
    let root = openresolv_root();
    assert!(
        root.join("sbin/resolvconf").is_file() && root.join("lib/resolvconf/libc").is_file(),
        "openresolv is not unpacked in {}: run scripts/test.sh (it does `apt-get download \
         openresolv` and `dpkg-deb -x` into target/openresolv), or set WG_TESTS_OPENRESOLV",
        root.display()
    );
    root
}

/// How to prepare a sandbox's private `/etc`.
#[derive(Clone, Copy, Debug)]
pub struct PrivateEtc {
    resolvconf: bool,
    nft: bool,
    symlink: bool,
    interface_order: Option<&'static str>,
}

impl PrivateEtc {
    /// A private `/etc` with openresolv available as `resolvconf`.
    pub fn with_resolvconf() -> Self {
        PrivateEtc {
            resolvconf: true,
            nft: true,
            symlink: false,
            interface_order: None,
        }
    }

    /// A private `/etc` and no `resolvconf` in `PATH` at all.
    pub fn without_resolvconf() -> Self {
        PrivateEtc {
            resolvconf: false,
            nft: true,
            symlink: false,
            interface_order: None,
        }
    }

    /// Also writes `/etc/resolvconf/interface-order` (Debian resolvconf's file, which wg-quick
    /// reads for its interface-name prefix) with this content.
    pub fn interface_order(mut self, content: &'static str) -> Self {
        self.interface_order = Some(content);
        self
    }

    /// Also hides `/usr/sbin/nft` (a whiteout in the sandbox's `/usr/sbin` overlay), so that
    /// wg-quick takes its iptables-restore path. A copy stays in `/run/.wg-tests/bin/nft`, out
    /// of `PATH`, for the snapshots.
    pub fn without_nft(mut self) -> Self {
        self.nft = false;
        self
    }

    /// Makes `/usr/sbin/resolvconf` a symlink (to `resolvconf.openresolv` beside it), as it is
    /// when resolvconf is systemd's resolvectl: upstream HEAD's wg-quick then ignores
    /// `/etc/resolvconf/interface-order`.
    pub fn resolvconf_symlink(mut self) -> Self {
        self.symlink = true;
        self
    }

    /// Mounts everything inside `sandbox` (see the module docs). Panics on failure.
    pub fn apply(self, sandbox: &Sandbox) {
        let mut script = String::from(
            "set -e\n\
             mkdir -p /run/.wg-tests/etc /run/.wg-tests/etc-work\n\
             mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/.wg-tests/etc,workdir=/run/.wg-tests/etc-work /etc\n\
             [ \"$(findmnt -n -o FSTYPE --mountpoint /etc)\" = overlay ]\n\
             rm -f /etc/resolv.conf /etc/resolvconf.conf\n\
             rm -rf /etc/resolvconf\n",
        );
        script += &format!("printf '%s' '{START_RESOLV_CONF}' > /etc/resolv.conf\n");
        script += "mkdir -p /etc/wireguard\n\
                   mount -t tmpfs -o mode=0700 tmpfs /etc/wireguard\n";
        // /usr/sbin: a writable overlay (upper on the tmpfs), so that nft can be hidden.
        let mut sbin_lower = String::from("/usr/sbin");
        if self.resolvconf {
            let root = require_openresolv();
            let root = root.display();
            sbin_lower = format!("{root}/sbin:/usr/sbin");
            script += &format!(
                "mount -t overlay overlay -o lowerdir={root}/lib:/usr/lib /usr/lib\n\
                 cp {root}/etc/resolvconf.conf /etc/resolvconf.conf\n"
            );
        }
        script += &format!(
            "mkdir -p /run/.wg-tests/sbin /run/.wg-tests/sbin-work\n\
             mount -t overlay overlay -o lowerdir={sbin_lower},upperdir=/run/.wg-tests/sbin,workdir=/run/.wg-tests/sbin-work /usr/sbin\n\
             [ \"$(findmnt -n -o FSTYPE --mountpoint /usr/sbin)\" = overlay ]\n"
        );
        if self.resolvconf {
            if self.symlink {
                script += "mv /usr/sbin/resolvconf /usr/sbin/resolvconf.openresolv\n\
                           ln -s resolvconf.openresolv /usr/sbin/resolvconf\n";
            }
            script += "command -v resolvconf >/dev/null\n";
        } else {
            script += "! command -v resolvconf >/dev/null\n";
        }
        if !self.nft {
            // Kept where the snapshot (tests/util/netstate.rs) finds it, outside PATH.
            script += "mkdir -p /run/.wg-tests/bin\n\
                       cp /usr/sbin/nft /run/.wg-tests/bin/nft\n\
                       rm /usr/sbin/nft\n\
                       ! command -v nft >/dev/null\n";
        }
        if let Some(order) = self.interface_order {
            script += &format!(
                "mkdir -p /etc/resolvconf\nprintf '%s' '{}' > /etc/resolvconf/interface-order\n",
                order.replace('\'', "'\\''")
            );
        }
        sandbox.sh(&script);
    }
}
