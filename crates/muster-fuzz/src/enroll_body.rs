//! Target `enroll_body`: the body of `POST /api/v1/enroll`, which anyone may send. Parsed as the
//! server parses it (JSON into [`EnrollRequest`]), then validated as the enroll handler does:
//! machine id, labels, token, name. Nothing may panic; what is accepted must be what was given.

use muster_core::{Labels, MachineId, Name, TokenSecret};
use muster_proto::api::EnrollRequest;

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<EnrollRequest>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&request).expect("a parsed body encodes");
    let again: EnrollRequest = serde_json::from_slice(&encoded).expect("an encoded body parses");
    assert_eq!(again, request, "a body survives its round trip");

    if let Ok(machine) = MachineId::parse(&request.machine_id) {
        assert_eq!(machine.as_str(), request.machine_id);
    }
    if let Ok(labels) = Labels::from_pairs(request.labels.clone()) {
        assert_eq!(
            labels.as_map(),
            &request.labels,
            "accepted labels are kept as given"
        );
        assert!(labels.len() <= muster_core::labels::MAX_LABELS);
    }
    if let Some(token) = &request.token
        && let Ok(parsed) = TokenSecret::parse(token)
    {
        assert_eq!(
            parsed.expose(),
            token.trim(),
            "a token is the name and secret it was"
        );
        let again = TokenSecret::parse(&parsed.expose()).expect("a shown token parses");
        assert_eq!(again.name, parsed.name);
        assert_eq!(again.secret(), parsed.secret());
    }
    if let Some(name) = &request.name
        && let Ok(parsed) = Name::parse(name)
    {
        assert_eq!(parsed.as_str(), name);
    }
}
