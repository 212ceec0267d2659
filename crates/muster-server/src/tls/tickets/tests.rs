//! The ticket key file: owner-only, kept across restarts for the same certificate, rotated and
//! erased on schedule, refused when others could read it. Tickets themselves: sealed under the
//! newest key, opened under any kept key, and nothing else opens. Real handshakes through these
//! tickets (TLS 1.3 resumed across a restart, TLS 1.2 never given one) are in `handshakes.rs`.

use std::os::unix::fs::PermissionsExt;

use rustls::server::ProducesTickets;

use super::*;

const CERT: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
const OTHER_CERT: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000002";

/// A TLS 1.3 session as rustls encodes it: no SNI, then the version (the rest does not matter
/// to the ticketer).
fn session() -> Vec<u8> {
    let mut plain = vec![0u8];
    plain.extend_from_slice(&TLS13);
    plain.extend_from_slice(b"the rest of a session");
    plain
}

fn open(path: &Path, cert: &str) -> Tickets {
    Tickets(Arc::new(PersistentTicketer::open(path, cert).unwrap()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Rewrites the file with every key made `age` earlier than it says.
fn age_keys(path: &Path, age: Duration) {
    let mut file: KeyFile = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for key in &mut file.keys {
        key.created -= age.as_secs();
    }
    muster_fs::write_private(path, serde_json::to_string(&file).unwrap().as_bytes()).unwrap();
}

#[test]
fn the_key_file_is_owner_only_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tls/ticket-keys");
    let first = open(&path, CERT);
    assert_eq!(mode(&path), 0o600, "the ticket keys are a secret");
    let ticket = first.encrypt(&session()).unwrap();
    assert_eq!(first.decrypt(&ticket), Some(session()));
    let before = std::fs::read(&path).unwrap();

    // A restart: the same keys, so a ticket from before opens.
    let restarted = open(&path, CERT);
    assert_eq!(restarted.decrypt(&ticket), Some(session()));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "nothing was due: unchanged"
    );
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn keys_readable_by_others_or_of_another_certificate_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticket-keys");
    let ticket = open(&path, CERT).encrypt(&session()).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = open(&path, CERT);
    assert_eq!(exposed.decrypt(&ticket), None, "exposed keys are replaced");
    assert_eq!(mode(&path), 0o600, "and the new file is owner-only");

    let ticket = exposed.encrypt(&session()).unwrap();
    let recertified = open(&path, OTHER_CERT);
    assert_eq!(
        recertified.decrypt(&ticket),
        None,
        "a new certificate brings new ticket keys"
    );
}

#[test]
fn a_malformed_key_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticket-keys");
    muster_fs::write_private(&path, b"{not json").unwrap();
    let tickets = open(&path, CERT);
    let ticket = tickets.encrypt(&session()).unwrap();
    assert_eq!(open(&path, CERT).decrypt(&ticket), Some(session()));
}

#[test]
fn keys_rotate_daily_and_are_erased_once_their_tickets_expired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticket-keys");
    let old_ticket = open(&path, CERT).encrypt(&session()).unwrap();

    // A day later: a new key seals, the old one still opens what it sealed.
    age_keys(&path, ROTATE_EVERY);
    let rotated = open(&path, CERT);
    let new_ticket = rotated.encrypt(&session()).unwrap();
    assert_ne!(old_ticket[..NAME_LEN], new_ticket[..NAME_LEN], "a new key");
    assert_eq!(rotated.decrypt(&old_ticket), Some(session()));
    assert_eq!(rotated.0.keys.read().unwrap().len(), 2);

    // Once every ticket of the old key has expired, it is gone from memory and the file.
    age_keys(&path, TICKET_LIFETIME);
    let later = open(&path, CERT);
    assert_eq!(later.decrypt(&old_ticket), None);
    let file: KeyFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        file.keys
            .iter()
            .all(|k| k.name != hex::encode(&old_ticket[..NAME_LEN])),
        "the erased key is not in the file"
    );
}

#[test]
fn only_tickets_sealed_under_a_kept_key_open() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = open(&dir.path().join("a"), CERT);
    let stranger = open(&dir.path().join("b"), CERT);
    let ticket = tickets.encrypt(&session()).unwrap();
    assert_eq!(stranger.decrypt(&ticket), None, "another server's key");
    for i in 0..ticket.len() {
        let mut tampered = ticket.clone();
        tampered[i] ^= 1;
        assert_eq!(tickets.decrypt(&tampered), None, "byte {i} changed");
    }
    assert_eq!(tickets.decrypt(&ticket[..ticket.len() - 1]), None);
    assert_eq!(tickets.decrypt(&[]), None);
    assert_eq!(tickets.decrypt(&vec![0u8; 100_000]), None);
    // Two tickets of one session differ (a random nonce each).
    assert_ne!(tickets.encrypt(&session()), tickets.encrypt(&session()));
}

#[test]
fn only_tls13_sessions_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = open(&dir.path().join("k"), CERT);
    let mut tls12 = vec![1u8, 9];
    tls12.extend_from_slice(b"localhost");
    tls12.extend_from_slice(&[0x03, 0x03]);
    tls12.extend_from_slice(b"a master secret");
    assert_eq!(tickets.encrypt(&tls12), None);
    let mut tls13_sni = vec![1u8, 9];
    tls13_sni.extend_from_slice(b"localhost");
    tls13_sni.extend_from_slice(&TLS13);
    assert!(tickets.encrypt(&tls13_sni).is_some());
    assert_eq!(tickets.encrypt(&[]), None);
    assert_eq!(tickets.encrypt(&[1, 200]), None);
}

#[test]
fn nothing_secret_shows_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let tickets = open(&path, CERT);
    let file: KeyFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let shown = format!("{tickets:?}");
    for key in &file.keys {
        assert!(
            !shown.contains(&key.secret) && !shown.contains(&key.name),
            "{shown}"
        );
    }
}
