//! The payloads inside sealed control messages (see [`crate::wire`] for the envelope).

use std::net::SocketAddr;

use crate::wire::{put_addr, Reader};

/// At most this many keys or candidates in one message.
pub const MAX_LIST: usize = 32;

/// Peer → relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRelay {
    /// Registers the sender's address (the datagram's source) and names the peers it wants
    /// relay sessions and signalling with. Answered with [`FromRelay::Registered`]; repeated
    /// periodically (it also holds the NAT mapping toward the relay).
    Register {
        /// Public keys of the peers wanted.
        wants: Vec<[u8; 32]>,
    },
    /// A sealed peer-to-peer message for `to`, passed on only if both named each other.
    Signal {
        /// The recipient's public key.
        to: [u8; 32],
        /// A complete [`crate::wire::KIND_PEER`] message, opaque to the relay.
        blob: Vec<u8>,
    },
}

/// Relay → peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRelay {
    /// The peer's address as the relay sees it, and its relay sessions: for each peer that
    /// is registered and named the recipient (and was named by it), the session id used for
    /// relayed data in both directions.
    Registered {
        /// The reflexive address (the NAT's mapping of the tunnel's socket).
        observed: SocketAddr,
        /// `(peer public key, session id)`.
        sessions: Vec<([u8; 32], u64)>,
    },
    /// A sealed message from `from`.
    Signal {
        /// The sender's public key (also inside the sealed blob, which is what counts).
        from: [u8; 32],
        /// A complete [`crate::wire::KIND_PEER`] message.
        blob: Vec<u8>,
    },
}

/// Where a candidate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address of a local interface (reaches the peer on the same LAN).
    Host,
    /// The address the relay saw (the NAT's mapping).
    Reflexive,
}

/// Peer → peer (directly, or inside a relay signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// A probe: answer with a pong to the datagram's source.
    Ping {
        /// Transaction id, echoed in the pong.
        txid: u64,
    },
    /// A probe's answer.
    Pong {
        /// The ping's transaction id.
        txid: u64,
        /// The ping's source address as the answerer saw it.
        observed: SocketAddr,
    },
    /// "Punch now": the sender's candidates; the receiver starts probing them at once and
    /// answers with its own when `reply` is set.
    Candidates {
        /// Whether the receiver should send its candidates back.
        reply: bool,
        /// The sender's addresses.
        candidates: Vec<(CandidateKind, SocketAddr)>,
    },
}

fn put_keys(out: &mut Vec<u8>, keys: &[[u8; 32]]) {
    let keys = &keys[..keys.len().min(MAX_LIST)];
    out.push(keys.len() as u8);
    for k in keys {
        out.extend_from_slice(k);
    }
}

impl ToRelay {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ToRelay::Register { wants } => {
                out.push(1);
                put_keys(&mut out, wants);
            }
            ToRelay::Signal { to, blob } => {
                out.push(2);
                out.extend_from_slice(to);
                out.extend_from_slice(blob);
            }
        }
        out
    }

    /// Parses a payload.
    pub fn decode(bytes: &[u8]) -> Option<ToRelay> {
        let mut r = Reader(bytes);
        match r.u8()? {
            1 => {
                let n = usize::from(r.u8()?).min(MAX_LIST);
                let wants = (0..n).map(|_| r.key()).collect::<Option<_>>()?;
                Some(ToRelay::Register { wants })
            }
            2 => Some(ToRelay::Signal {
                to: r.key()?,
                blob: r.rest().to_vec(),
            }),
            _ => None,
        }
    }
}

impl FromRelay {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            FromRelay::Registered { observed, sessions } => {
                out.push(1);
                put_addr(&mut out, *observed);
                let sessions = &sessions[..sessions.len().min(MAX_LIST)];
                out.push(sessions.len() as u8);
                for (key, id) in sessions {
                    out.extend_from_slice(key);
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
            FromRelay::Signal { from, blob } => {
                out.push(2);
                out.extend_from_slice(from);
                out.extend_from_slice(blob);
            }
        }
        out
    }

    /// Parses a payload.
    pub fn decode(bytes: &[u8]) -> Option<FromRelay> {
        let mut r = Reader(bytes);
        match r.u8()? {
            1 => {
                let observed = r.addr()?;
                let n = usize::from(r.u8()?);
                let sessions = (0..n)
                    .map(|_| Some((r.key()?, r.u64()?)))
                    .collect::<Option<_>>()?;
                Some(FromRelay::Registered { observed, sessions })
            }
            2 => Some(FromRelay::Signal {
                from: r.key()?,
                blob: r.rest().to_vec(),
            }),
            _ => None,
        }
    }
}

impl PeerMsg {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PeerMsg::Ping { txid } => {
                out.push(1);
                out.extend_from_slice(&txid.to_le_bytes());
            }
            PeerMsg::Pong { txid, observed } => {
                out.push(2);
                out.extend_from_slice(&txid.to_le_bytes());
                put_addr(&mut out, *observed);
            }
            PeerMsg::Candidates { reply, candidates } => {
                out.push(3);
                out.push(u8::from(*reply));
                let candidates = &candidates[..candidates.len().min(MAX_LIST)];
                out.push(candidates.len() as u8);
                for (kind, addr) in candidates {
                    out.push(match kind {
                        CandidateKind::Host => 0,
                        CandidateKind::Reflexive => 1,
                    });
                    put_addr(&mut out, *addr);
                }
            }
        }
        out
    }

    /// Parses a payload.
    pub fn decode(bytes: &[u8]) -> Option<PeerMsg> {
        let mut r = Reader(bytes);
        match r.u8()? {
            1 => Some(PeerMsg::Ping { txid: r.u64()? }),
            2 => Some(PeerMsg::Pong {
                txid: r.u64()?,
                observed: r.addr()?,
            }),
            3 => {
                let reply = r.u8()? != 0;
                let n = usize::from(r.u8()?).min(MAX_LIST);
                let candidates = (0..n)
                    .map(|_| {
                        let kind = match r.u8()? {
                            0 => CandidateKind::Host,
                            1 => CandidateKind::Reflexive,
                            _ => return None,
                        };
                        Some((kind, r.addr()?))
                    })
                    .collect::<Option<_>>()?;
                Some(PeerMsg::Candidates { reply, candidates })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_roundtrips() {
        let a: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        for m in [
            ToRelay::Register {
                wants: vec![[1; 32], [2; 32]],
            },
            ToRelay::Signal {
                to: [3; 32],
                blob: vec![1, 2, 3],
            },
        ] {
            assert_eq!(ToRelay::decode(&m.encode()), Some(m));
        }
        for m in [
            FromRelay::Registered {
                observed: a,
                sessions: vec![([4; 32], 99)],
            },
            FromRelay::Signal {
                from: [5; 32],
                blob: vec![],
            },
        ] {
            assert_eq!(FromRelay::decode(&m.encode()), Some(m));
        }
        for m in [
            PeerMsg::Ping { txid: 7 },
            PeerMsg::Pong {
                txid: 8,
                observed: a,
            },
            PeerMsg::Candidates {
                reply: true,
                candidates: vec![(CandidateKind::Host, a), (CandidateKind::Reflexive, a)],
            },
        ] {
            assert_eq!(PeerMsg::decode(&m.encode()), Some(m));
        }
        for garbage in [&b""[..], b"\x09", b"\x01\x05", b"\x03\x01\x01\x07"] {
            assert!(PeerMsg::decode(garbage).is_none());
            assert!(FromRelay::decode(garbage).is_none());
        }
    }
}
