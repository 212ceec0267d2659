//! The HTTP side of paged lists: reading a list's query string (repeatable parameters like
//! `label` included) and answering with the page as a JSON array and the next page named in an
//! RFC 8288 `Link: <…>; rel="next"` header that repeats the request's filters.

use axum::Json;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use muster_proto::ErrorCode;
use serde::Serialize;

use crate::error::AppError;
use crate::ops::page::{self, Cursor, CursorKind, Page};

/// More parameters than any list takes (filters, `label` repeated up to its bound, `limit`,
/// `cursor`) is not a request for a list.
const MAX_PARAMS: usize = 32;

/// A list request's query string, as pairs in their order, and the path it was sent to.
#[derive(Debug, Clone)]
pub struct ListQuery {
    path: String,
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        // The original URI: inside `nest` the request's own has lost its `/api/v1` prefix.
        let OriginalUri(uri) = OriginalUri::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .take(MAX_PARAMS + 1)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        if pairs.len() > MAX_PARAMS {
            return Err(AppError::bad_request(
                ErrorCode::BadRequest,
                format!("more than {MAX_PARAMS} query parameters"),
            ));
        }
        Ok(Self {
            path: uri.path().to_owned(),
            pairs,
        })
    }
}

impl ListQuery {
    /// Refuses a parameter this list does not take (a typo would otherwise list everything).
    pub fn only(&self, known: &[&str]) -> Result<(), AppError> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(AppError::bad_request(
                ErrorCode::BadRequest,
                format!("unknown query parameter `{}`", page::shown(k)),
            )
            .with_hint(format!("this list takes {}", known.join(", ")))),
        }
    }

    /// The last value of `key`, if given.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn limit(&self) -> Result<u32, AppError> {
        page::limit(self.one("limit"))
    }

    pub fn cursor(&self, kind: CursorKind) -> Result<Option<Cursor>, AppError> {
        self.one("cursor")
            .filter(|c| !c.is_empty())
            .map(|c| Cursor::decode(c, kind))
            .transpose()
    }

    /// The URL of the page after `next`: this request's parameters with the cursor replaced.
    fn next_url(&self, next: &Cursor) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| k != "cursor") {
            query.append_pair(k, v);
        }
        query.append_pair("cursor", &next.encode());
        format!("{}?{}", self.path, query.finish())
    }

    /// The page as the API answers it: the rows as a JSON array, and a `Link` header naming the
    /// next page when there is one.
    pub fn respond<T: Serialize>(&self, page: Page<T>) -> Response {
        let link = page.next.as_ref().and_then(|next| {
            HeaderValue::from_str(&format!("<{}>; rel=\"next\"", self.next_url(next))).ok()
        });
        let mut response = Json(page.items).into_response();
        if let Some(link) = link {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}
