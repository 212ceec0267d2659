//! Reading RFC 8288 `Link` headers: which page comes next in a paged list.

/// The target of the `rel="next"` link in one `Link` header value, when it is a path on the
/// same server (`/api/v1/…`): a list never sends its reader elsewhere.
pub fn next(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|rel| rel.trim_matches('"'))
                .is_some_and(|rel| {
                    rel.split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
        });
        (is_next && target.starts_with("/api/v1/")).then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::next;

    #[test]
    fn finds_the_next_page_among_links() {
        assert_eq!(
            next(r#"</api/v1/workers?cursor=abc>; rel="next""#).as_deref(),
            Some("/api/v1/workers?cursor=abc")
        );
        assert_eq!(
            next(r#"</api/v1/x?a=1>; rel="prev", </api/v1/x?a=2>; rel=next"#).as_deref(),
            Some("/api/v1/x?a=2")
        );
        assert_eq!(next(r#"<https://elsewhere/api/v1/x>; rel="next""#), None);
        assert_eq!(next(r#"</api/v1/x>; rel="prev""#), None);
        assert_eq!(next("garbage"), None);
    }
}
