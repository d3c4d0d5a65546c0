//! Random configurable device states for kernel devices, written as `wg setconf` files.
//!
//! Everything here is what the kernel can hold while the link is down: no handshakes, no
//! traffic, so every show form is deterministic. Some peers get thousands of allowed IPs, so
//! both tools must read multipart netlink dumps where a peer continues in the next message.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use wg_tests::rng::{random_cidr, random_endpoint};

/// One peer of a generated state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Peer {
    /// Base64.
    pub(crate) public_key: String,
    pub(crate) preshared_key: Option<String>,
    pub(crate) endpoint: Option<String>,
    /// `ip/cidr`, host bits possibly set (the kernel masks them).
    pub(crate) allowed_ips: Vec<String>,
    pub(crate) keepalive: u16,
}

/// A generated device state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Device {
    /// Base64; `None` = no private key.
    pub(crate) private_key: Option<String>,
    pub(crate) listen_port: u16,
    pub(crate) fwmark: u32,
    pub(crate) peers: Vec<Peer>,
}

impl Device {
    /// The `wg setconf` file for this state.
    pub(crate) fn conf(&self) -> String {
        let mut s = String::from("[Interface]\n");
        if let Some(k) = &self.private_key {
            let _ = writeln!(s, "PrivateKey = {k}");
        }
        let _ = writeln!(s, "ListenPort = {}", self.listen_port);
        match self.fwmark {
            0 => s += "FwMark = off\n",
            m => {
                let _ = writeln!(s, "FwMark = {m:#x}");
            }
        }
        for p in &self.peers {
            let _ = write!(s, "\n[Peer]\nPublicKey = {}\n", p.public_key);
            if let Some(k) = &p.preshared_key {
                let _ = writeln!(s, "PresharedKey = {k}");
            }
            // Long lists are split over several lines, as large configs are written.
            for chunk in p.allowed_ips.chunks(64) {
                let _ = writeln!(s, "AllowedIPs = {}", chunk.join(", "));
            }
            if let Some(e) = &p.endpoint {
                let _ = writeln!(s, "Endpoint = {e}");
            }
            if p.keepalive != 0 {
                let _ = writeln!(s, "PersistentKeepalive = {}", p.keepalive);
            }
        }
        s
    }
}

pub(crate) fn random_key(rng: &mut ChaCha8Rng) -> String {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    STANDARD.encode(k)
}

/// `n` distinct host routes (v4 /32 and v6 /128 mixed), as a big peer would have.
fn many_cidrs(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    let base4: u32 = rng.gen::<u32>() & 0xfff0_0000;
    let base6: u128 = rng.gen::<u128>() & !0xffff_ffff;
    (0..n as u32)
        .map(|i| {
            if i % 3 == 2 {
                format!("{}/128", Ipv6Addr::from(base6 | u128::from(i)))
            } else {
                format!("{}/32", Ipv4Addr::from(base4 | i))
            }
        })
        .collect()
}

/// A random state. `big` gives one or two peers thousands of allowed IPs.
pub(crate) fn random_device(rng: &mut ChaCha8Rng, big: bool) -> Device {
    let peers = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(0..=3),
        60..=89 => rng.gen_range(4..=20),
        90..=97 => rng.gen_range(21..=60),
        _ => rng.gen_range(100..=200),
    };
    let mut device = Device {
        private_key: rng.gen_bool(0.8).then(|| random_key(rng)),
        listen_port: match rng.gen_range(0..10) {
            0 => 0,
            1 => 65535,
            _ => rng.gen_range(1..=65535),
        },
        fwmark: match rng.gen_range(0..8) {
            0..=3 => 0,
            4 => 0xffff_ffff,
            5 => 1,
            _ => rng.gen(),
        },
        peers: (0..peers)
            .map(|_| Peer {
                public_key: random_key(rng),
                preshared_key: rng.gen_bool(0.4).then(|| random_key(rng)),
                endpoint: random_endpoint(rng),
                allowed_ips: {
                    let n = *[0, 1, 1, 2, 3, rng.gen_range(0..=12)]
                        .choose(rng)
                        .expect("non-empty");
                    (0..n).map(|_| random_cidr(rng)).collect()
                },
                keepalive: *[0, 0, 0, 1, 25, 65535, rng.gen_range(1..=65535)]
                    .choose(rng)
                    .expect("non-empty"),
            })
            .collect(),
    };
    if big {
        if device.peers.is_empty() {
            device.peers.push(Peer {
                public_key: random_key(rng),
                ..Peer::default()
            });
        }
        for _ in 0..rng.gen_range(1..=2) {
            let i = rng.gen_range(0..device.peers.len());
            let n = rng.gen_range(1000..=4000);
            device.peers[i].allowed_ips.extend(many_cidrs(rng, n));
        }
    }
    device
}
