//! Channel binding: a value both ends of one TLS connection can derive and no one else can.
//!
//! A worker proves it holds its private key by signing this value (a TLS exporter, RFC 8446
//! §7.5 / RFC 5705). Because the value is unique to the connection it was derived on, a signature
//! captured or relayed by someone in the middle is useless on any other connection.
//!
//! rustls 0.23 offers `export_keying_material` on its buffered connections (the worker's side
//! uses it) but not on the unbuffered server connection [`super::LeanTls`] drives. What rustls
//! does offer on every connection is its key log: it hands the TLS 1.3 exporter master secret to
//! [`ServerConfig::key_log`](rustls::ServerConfig) during the handshake. [`ExporterSecretLog`]
//! catches that secret for the connection whose records are being processed on this thread
//! (rustls calls the key log synchronously inside `process_tls_records`), and [`derive`]
//! finishes the exporter from it with the negotiated suite's own HKDF and hash — the same
//! computation rustls performs for `export_keying_material`, checked against it in the tests.
//! Nothing here is a new primitive: HKDF-Expand-Label and the exporter are TLS 1.3's.
//!
//! TLS 1.2 has no exporter master secret in the key log (its exporter needs both randoms, which
//! rustls does not expose here), so a TLS 1.2 connection has no binding; workers speak TLS 1.3.

use std::cell::RefCell;

use rustls::SupportedCipherSuite;
use rustls::crypto::tls13::OkmBlock;

/// The exporter label for muster's control channel and enrollment proofs. Both ends must use
/// exactly this value.
pub const EXPORTER_LABEL: &[u8] = muster_proto::identity::EXPORTER_LABEL;

/// The exporter value of one TLS connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChannelBinding(pub [u8; 32]);

impl std::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not a secret by itself, but nothing a log needs either.
        f.write_str("ChannelBinding(..)")
    }
}

thread_local! {
    /// The exporter master secret rustls logged while this thread processed one connection's
    /// records. Set to `Some(empty)` to start catching; taken back right after the call.
    static CAUGHT: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The key log that catches the TLS 1.3 exporter master secret and nothing else. It never
/// writes anywhere: the secret stays in memory until [`derive`] has used it.
#[derive(Debug, Default)]
pub struct ExporterSecretLog;

impl rustls::KeyLog for ExporterSecretLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label != "EXPORTER_SECRET" {
            return;
        }
        CAUGHT.with(|caught| {
            if let Some(slot) = caught.borrow_mut().as_mut() {
                slot.clear();
                slot.extend_from_slice(secret);
            }
        });
    }

    fn will_log(&self, label: &str) -> bool {
        label == "EXPORTER_SECRET"
    }
}

/// Starts catching on this thread, right before one call into rustls for one connection.
pub fn start_catching() {
    CAUGHT.with(|caught| *caught.borrow_mut() = Some(Vec::new()));
}

/// Stops catching, right after that call: the exporter master secret it logged, if any.
pub fn stop_catching() -> Option<Vec<u8>> {
    CAUGHT
        .with(|caught| caught.borrow_mut().take())
        .filter(|s| !s.is_empty())
}

/// `TLS-Exporter(EXPORTER_LABEL, "", 32)` from the exporter master secret (RFC 8446 §7.5):
/// `HKDF-Expand-Label(Derive-Secret(secret, label, ""), "exporter", Hash(""), 32)`.
pub fn derive(suite: SupportedCipherSuite, exporter_secret: &[u8]) -> Option<ChannelBinding> {
    let SupportedCipherSuite::Tls13(suite) = suite else {
        return None;
    };
    let hash = suite.common.hash_provider;
    let empty_hash = hash.hash(b"");
    let hkdf = suite.hkdf_provider;
    // Derive-Secret(secret, label, "") = HKDF-Expand-Label(secret, label, Hash(""), HashLen).
    let mut derived = vec![0u8; hash.output_len()];
    expand_label(
        &*hkdf.expander_for_okm(&OkmBlock::new(exporter_secret)),
        EXPORTER_LABEL,
        empty_hash.as_ref(),
        &mut derived,
    )?;
    let mut out = [0u8; 32];
    expand_label(
        &*hkdf.expander_for_okm(&OkmBlock::new(&derived)),
        b"exporter",
        empty_hash.as_ref(),
        &mut out,
    )?;
    Some(ChannelBinding(out))
}

/// `HKDF-Expand-Label` (RFC 8446 §7.1).
fn expand_label(
    expander: &dyn rustls::crypto::tls13::HkdfExpander,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    let info: [&[u8]; 6] = [&length, &label_len, b"tls13 ", label, &context_len, context];
    expander.expand_slice(&info, out).ok()
}
