//! NAT traversal in network namespaces (issue 9; shared/spec/nat-traversal.md): a simulated
//! Internet with nftables NAT routers (`wg_tests::nat_topology`), hosts behind them, and a
//! relay on the public side (root only; each test prints a skip message otherwise).
//!
//! * `behaviour`: the simulated NATs themselves (port-restricted cone, full cone, symmetric,
//!   CGNAT + home NAT, UDP-blocking router), checked with UDP probes and mapping reflectors,
//!   and what `conntrack -F` does to their mappings.
//! * `cells`: the outcome matrix: two peers behind NATs (`wg-quick up`, our wg-tunnel), a
//!   `wg-relay` on the public side; path reported, checksummed TCP stream across the
//!   relay-to-direct switch, relay byte counters, recovery after `conntrack -F`; the relay's
//!   wire holds no plaintext; a stock wireguard-go peer with a static endpoint interoperates;
//!   a direct path that dies mid-stream falls back to the relay and comes back.
//! * `security`: forged and replayed control messages change no endpoint; an unauthenticated
//!   flood at the relay is dropped without disturbing a relayed stream; a peer that did not
//!   ask gets no relayed data.

mod behaviour;
mod cells;
mod security;

use std::thread;
use std::time::{Duration, Instant};

/// How long a condition polled for may take (generous: 2 busy cores).
const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` every few milliseconds until it holds; panics with `what` after [`DEADLINE`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
