//! wg-relay: the I/O shell around [`wg_nat::Relay`].
