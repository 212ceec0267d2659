//! The decision tables, and the words of every stop the worker decides on its own.

use super::*;

const ALL_CLOSE_CODES: [CloseCode; 10] = [
    CloseCode::Revoked,
    CloseCode::Expired,
    CloseCode::Superseded,
    CloseCode::Removed,
    CloseCode::Replaced,
    CloseCode::GoingAway,
    CloseCode::Protocol,
    CloseCode::Idle,
    CloseCode::Other(1000),
    CloseCode::NO_STATUS,
];

fn stop(failure: Failure) -> WorkerError {
    match failure {
        Failure::Stop(error) => error,
        Failure::Retry { reason, .. } => panic!("expected a stop, got a retry: {reason}"),
    }
}

#[test]
fn each_refusal_has_its_documented_exit_code() {
    let cases = [
        (ErrorCode::SecretMismatch, Some(3)),
        (ErrorCode::EnrollmentDisabled, Some(3)),
        (ErrorCode::NameInUse, Some(3)),
        (ErrorCode::TokenUnknown, Some(3)),
        (ErrorCode::LicenseRequired, Some(3)),
        (ErrorCode::LicenseSeatsExhausted, Some(3)),
        (ErrorCode::TokenBoundElsewhere, Some(4)),
        (ErrorCode::UnknownIdentity, Some(4)),
        (ErrorCode::TokenRevoked, Some(5)),
        (ErrorCode::WorkerRevoked, Some(5)),
        (ErrorCode::TokenExpired, Some(6)),
        (ErrorCode::WorkerExpired, Some(6)),
        (ErrorCode::InvalidLabel, Some(2)),
        (ErrorCode::ServerBusy, None),
        (ErrorCode::RateLimited, None),
        (ErrorCode::Internal, None),
        (ErrorCode::Unknown, None),
    ];
    for (error, expected) in cases {
        assert_eq!(exit_code_for(error), expected, "{error:?}");
        let failure = from_api(error, "refused", Some("do this"), None);
        match expected {
            Some(code) => assert_eq!(stop(failure).exit_code(), code, "{error:?}"),
            None => assert!(matches!(failure, Failure::Retry { .. }), "{error:?}"),
        }
    }
}

#[test]
fn retry_keeps_the_servers_suggestion() {
    assert_eq!(
        from_api(ErrorCode::ServerBusy, "full", None, Some(3000)),
        Failure::Retry {
            reason: "full".into(),
            after: Some(Duration::from_secs(3))
        }
    );
}

#[test]
fn permanent_close_codes_stop_with_their_exit_code_and_the_rest_reconnect() {
    let expected = [
        (CloseCode::Revoked, Some(5)),
        (CloseCode::Expired, Some(6)),
        (CloseCode::Superseded, Some(4)),
        (CloseCode::Removed, Some(4)),
        (CloseCode::Replaced, Some(4)),
        (CloseCode::GoingAway, None),
        (CloseCode::Protocol, None),
        (CloseCode::Idle, None),
        (CloseCode::Other(1000), None),
        (CloseCode::NO_STATUS, None),
    ];
    for (close, code) in expected {
        assert_eq!(close_exit_code(close), code, "{close:?}");
        match (from_close(close, "words"), code) {
            (Failure::Stop(error), Some(code)) => {
                assert_eq!(error.cause(), Cause::Closed(close));
                assert_eq!(error.exit_code(), code, "{close:?}");
            }
            (Failure::Retry { reason, after }, None) => {
                assert_eq!((reason.as_str(), after), ("words", None));
            }
            (other, code) => panic!("{close:?}: {other:?}, expected exit code {code:?}"),
        }
    }
    match from_close(CloseCode::Other(1006), "") {
        Failure::Retry { reason, .. } => {
            assert_eq!(reason, "the server closed the channel (code 1006)");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn local_causes_have_their_exit_codes() {
    assert_eq!(exit_code(Cause::Config), 2);
    assert_eq!(exit_code(Cause::UntrustedCertificate), 7);
    assert_eq!(exit_code(Cause::ChannelClosed), 1);
}

#[test]
fn close_code_stops_read_as_one_line_with_a_hint() {
    let lines: Vec<String> = ALL_CLOSE_CODES
        .into_iter()
        .filter_map(|close| match from_close(close, "") {
            Failure::Stop(error) => {
                Some(format!("{close:?} (exit {}): {error}", error.exit_code()))
            }
            Failure::Retry { .. } => None,
        })
        .collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn client_failures_read_as_one_line_with_a_hint() {
    let url = "https://muster.example:7443";
    let lines = [
        stop(from_client(&ClientError::UntrustedCertificate {
            url: url.into(),
        })),
        stop(from_client(&ClientError::PlainHttpToHttps {
            url: "http://muster.example:7443".into(),
        })),
        stop(from_client(&ClientError::NotTls { url: url.into() })),
        stop(from_client(&ClientError::BadUrl(
            "muster.example:7443".into(),
        ))),
    ]
    .map(|error| format!("(exit {}) {error}", error.exit_code()));
    insta::assert_snapshot!(lines.join("\n"));
}
