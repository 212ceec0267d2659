//! How a worker proves it holds its private key: the constants both ends must agree on.

/// The TLS exporter label (RFC 5705 / RFC 8446 §7.5) for muster's proofs of possession. A worker
/// signs the exporter value of the connection it is on, so a signature is good on that
/// connection only.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-muster-proof-v1";
