//! Checking a webhook's URL, which an admin types: `https://`, or `http://` only to a receiver
//! on this host, so events (and their signatures) never cross a network in the clear.

use std::net::IpAddr;

use muster_proto::ErrorCode;
use reqwest::Url;

use crate::error::AppError;

/// The longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

pub fn parse(input: &str) -> Result<Url, AppError> {
    let refuse = |why: String, hint: &str| {
        AppError::bad_request(ErrorCode::BadRequest, why)
            .with_field("url")
            .with_hint(hint.to_owned())
    };
    if input.len() > MAX_URL_BYTES {
        return Err(refuse(
            format!("the webhook URL is longer than {MAX_URL_BYTES} bytes"),
            "use a shorter URL",
        ));
    }
    let url = Url::parse(input).map_err(|e| {
        refuse(
            format!("the webhook URL is not a URL: {e}"),
            "give a full URL such as `https://alerts.example.com/muster`",
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "the webhook URL holds a user name or password".into(),
            "requests are authenticated by their `Muster-Signature`; leave credentials out of the URL",
        ));
    }
    if url.fragment().is_some() {
        return Err(refuse(
            "the webhook URL has a `#fragment`, which is never sent".into(),
            "remove the part from `#`",
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(refuse(
            "the webhook URL names no host".into(),
            "give a full URL such as `https://alerts.example.com/muster`",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        "http" => Err(refuse(
            format!("`http://` is allowed only to a receiver on this host, not to `{host}`"),
            "use `https://`, or `http://127.0.0.1:PORT/…` for a receiver on this host",
        )),
        other => Err(refuse(
            format!("a webhook URL is `https://` or `http://`, not `{other}://`"),
            "use `https://`",
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_on_this_host() {
        for ok in [
            "https://alerts.example.com/muster",
            "https://10.0.0.5:8443/x?y=1",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:8080/",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://alerts.example.com/muster",
            "http://10.0.0.5/",
            "ftp://127.0.0.1/",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            "not a url",
            "file:///etc/passwd",
            "",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.field, Some("url"), "{bad}");
        }
        assert!(parse(&format!("https://example.com/{}", "a".repeat(3000))).is_err());
    }
}
