//! The regression guard of the fast data path (issue 7): a cheap stand-in for the benchmark
//! that asserts nothing about time, only that the batched and offload paths are taken.
//!
//! * Offload negotiation: `ethtool -k wg0` in each namespace shows what `TUNSETOFFLOAD`
//!   turned on for wg-tunnel's TUN device: checksum offload (`tx-checksum-ip-generic`), TCP
//!   segmentation for IPv4 and IPv6 (`tx-tcp-segmentation`, `tx-tcp6-segmentation`), and UDP
//!   segmentation (`tx-udp-segmentation`) where the kernel offers it to TUN devices (probed
//!   here on a scratch TUN device in the same namespace: `TUN_F_USO4 | TUN_F_USO6`, Linux 6.2
//!   and later).
//! * Syscalls per megabyte: `perf stat -e raw_syscalls:sys_enter --per-thread -p A,B` counts,
//!   in the kernel, every system call of both daemons (all their threads) while a 50 MB TCP
//!   transfer runs through the tunnel (perf wraps the sender, so the count covers exactly the
//!   transfer). One read, one write and one send or receive per packet makes well over 1,000
//!   per MB per daemon (about 700 full-size packets per MB, plus the ACKs the other way);
//!   batched socket I/O alone with one TUN read or write per packet measured about 800; the
//!   whole fast path (TSO super-packets from the TUN device, GSO/GRO on the socket, coalesced
//!   writes to the TUN device, a crypto pool) measured 62 to 77. The limit, 250, sits between.
//!   A count of calls, not a time: a slower or busier machine only makes batches larger.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{Impl, Net, Setup, Tool, Transfer, B, DEADLINE};
use wg_tests::{require_root, xfer, Sandbox};

/// Bytes moved by the measured transfer.
const BYTES: u64 = 50_000_000;

/// The perf event counting every system call.
const TOTAL: &str = "raw_syscalls:sys_enter";

/// The most system calls per megabyte moved that either daemon may make.
const MAX_SYSCALLS_PER_MB: f64 = 250.0;

/// System calls counted one by one as well, for the report (the limit is on all of them).
const BREAKDOWN: [&str; 16] = [
    "read",
    "readv",
    "write",
    "writev",
    "recvmmsg",
    "sendmmsg",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "futex",
    "sched_yield",
];

/// `TUNSETOFFLOAD` flags (linux/if_tun.h), not all in the `libc` crate.
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

/// Whether the kernel lets a TUN device in `sandbox` offload UDP segmentation: creates a
/// scratch TUN device there (from a thread that joins the sandbox's network namespace) and
/// asks for `TUN_F_USO4 | TUN_F_USO6`. The device goes when its descriptor closes.
fn kernel_offers_uso(sandbox: &Sandbox) -> bool {
    let netns = format!("/proc/{}/ns/net", sandbox.pid());
    std::thread::spawn(move || {
        let ns = File::open(&netns).unwrap_or_else(|e| panic!("open {netns}: {e}"));
        // SAFETY: setns on this short-lived thread only (it exits right after), with a
        // namespace file we hold open; ioctls on a descriptor we own with a properly sized
        // ifreq; the descriptor is closed before returning.
        unsafe {
            assert_eq!(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns");
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            assert!(fd >= 0, "open /dev/net/tun");
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (dst, src) in ifr.ifr_name.iter_mut().zip(b"usoprobe0\0") {
                *dst = *src as libc::c_char;
            }
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
            assert_eq!(libc::ioctl(fd, libc::TUNSETIFF, &ifr), 0, "TUNSETIFF");
            let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;
            let ok = libc::ioctl(fd, libc::TUNSETOFFLOAD, flags) == 0;
            libc::close(fd);
            ok
        }
    })
    .join()
    .expect("USO probe thread")
}

/// `ethtool -k wg0` in `sandbox` as (feature, "on"/"off") pairs.
fn features(sandbox: &Sandbox) -> HashMap<String, String> {
    let out = sandbox.run("ethtool", &["-k", "wg0"]);
    out.assert_code(0, "ethtool -k wg0 (install ethtool; scripts/test.sh does)");
    out.stdout_str()
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(": ")?;
            let value = value.split_whitespace().next()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn offloads_negotiated_and_syscalls_batched() {
    if !require_root() {
        return;
    }
    let net = Net::new(Setup::new(Impl::WgTunnel, Impl::WgTunnel, Tool::Reference));
    net.ping(&net.a, B.inner4);

    // (a) Offload negotiation, read from the kernel's side of the TUN device.
    let mut wanted = vec![
        "tx-checksum-ip-generic",
        "tx-tcp-segmentation",
        "tx-tcp6-segmentation",
    ];
    if kernel_offers_uso(&net.a) {
        wanted.push("tx-udp-segmentation");
    }
    // Every failure is collected and reported together, after both measurements.
    let mut failures = Vec::new();
    for (sandbox, name) in [(&net.a, "A"), (&net.b, "B")] {
        let features = features(sandbox);
        let off: Vec<_> = wanted
            .iter()
            .filter(|f| features.get(**f).map(String::as_str) != Some("on"))
            .collect();
        eprintln!("fastpath: {name}: wanted offloads {wanted:?}, off: {off:?}");
        if !off.is_empty() {
            failures.push(format!(
                "{name}: wg-tunnel's TUN device lacks offloads {off:?}: ethtool -k wg0 says \
                 {features:?}"
            ));
        }
    }

    // (b) System calls per MB, counted by the kernel around exactly the transfer.
    let pids = [net.dev_a.pid(), net.dev_b.pid()];
    let threads: Vec<Vec<u32>> = pids.iter().map(|&pid| tasks(pid)).collect();
    let mut receiver = net.b.spawn(&xfer(), &["recv", "[::]:5001"]);
    assert_eq!(receiver.expect_line(DEADLINE), "listening");
    let xfer = xfer();
    let dest = super::sockaddr(B.inner4, 5001);
    let pid_list = format!("{},{}", pids[0], pids[1]);
    let mut events = vec![TOTAL.to_owned()];
    events.extend(BREAKDOWN.iter().map(|s| format!("syscalls:sys_enter_{s}")));
    let events = events.join(",");
    #[rustfmt::skip]
    let perf_args = [
        "stat", "-x", ",", "-o", "/run/perf.csv", "--per-thread",
        "-e", &events, "-p", &pid_list,
        "--", xfer.to_str().expect("UTF-8 path"), "send", &dest, &BYTES.to_string(), "7",
    ];
    let sender = net.a.spawn(super::perf(), &perf_args);
    Transfer {
        sender,
        receiver,
        bytes: BYTES,
        started: Instant::now(),
    }
    .finish(&net);

    let csv = std::fs::read_to_string(net.a.host_path("/run/perf.csv")).expect("perf output");
    let mut per_daemon = [0u64; 2];
    let mut unattributed = 0u64;
    // Per daemon: system call name -> count.
    let mut breakdown: [BTreeMap<&str, u64>; 2] = Default::default();
    for line in csv.lines() {
        // `comm-tid,count,unit,event,...`
        let fields: Vec<&str> = line.split(',').collect();
        let [thread, count, _, event, ..] = fields[..] else {
            continue;
        };
        let tid: u32 = thread
            .rsplit('-')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let daemon = threads.iter().position(|t| t.contains(&tid));
        if event == TOTAL {
            match daemon {
                Some(i) => per_daemon[i] += count,
                None => unattributed += count,
            }
        } else if let (Some(i), Some(name)) = (daemon, event.strip_prefix("syscalls:sys_enter_")) {
            if count > 0 {
                *breakdown[i].entry(name).or_default() += count;
            }
        }
    }
    let mb = BYTES as f64 / 1e6;
    let rates = per_daemon.map(|n| n as f64 / mb);
    for (i, side) in ["A (sender side)", "B (receiver side)"].iter().enumerate() {
        eprintln!(
            "fastpath: daemon {side}: {} system calls over {mb} MB = {:.1}/MB; of which {:?}",
            per_daemon[i], rates[i], breakdown[i]
        );
    }
    eprintln!("fastpath: threads started during the transfer: {unattributed} system calls");
    assert!(
        per_daemon.iter().all(|&n| n > 0),
        "perf counted no system calls for a daemon:\n{csv}"
    );
    for (i, rate) in rates.iter().enumerate() {
        if *rate >= MAX_SYSCALLS_PER_MB {
            failures.push(format!(
                "daemon {} made {rate:.0} system calls per MB (limit {MAX_SYSCALLS_PER_MB}): \
                 the batched data path is not taken",
                ["A (sender side)", "B (receiver side)"][i]
            ));
        }
    }
    if unattributed as f64 / mb >= MAX_SYSCALLS_PER_MB {
        failures.push(format!(
            "threads started during the transfer made {unattributed} system calls"
        ));
    }
    assert!(failures.is_empty(), "{}\nperf:\n{csv}", failures.join("\n"));
}

/// The thread ids of process `pid`.
fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/PID/task")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}
