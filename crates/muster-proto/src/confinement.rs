//! How a worker confines the jobs it runs: sent by the worker as a header when it opens its
//! control channel (`landlock-v7`, or `none: <reason>`), kept with the live session, and shown as
//! the `confinement` of `GET /api/v1/workers/NAME` and `muster workers show`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The connect header that carries a worker's [`Confinement`].
pub const HEADER: &str = "x-muster-confinement";

/// The longest reason kept: the header comes from the worker, so the server bounds what it
/// stores and shows.
pub const MAX_REASON: usize = 200;

/// What stands between a worker's jobs and its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Confinement {
    /// Jobs run under Landlock, at this ABI version.
    Landlock { abi: u32 },
    /// Jobs are not confined, for this reason (an old kernel, Landlock switched off).
    #[serde(rename = "none")]
    Unconfined { reason: String },
}

impl fmt::Display for Confinement {
    /// The header form: `landlock-v7`, `none: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Landlock { abi } => write!(f, "landlock-v{abi}"),
            Self::Unconfined { reason } => write!(f, "none: {reason}"),
        }
    }
}

/// A header value that is neither `landlock-vN` nor `none: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownConfinement;

impl fmt::Display for UnknownConfinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected `landlock-vN` or `none: REASON`")
    }
}

impl std::error::Error for UnknownConfinement {}

impl FromStr for Confinement {
    type Err = UnknownConfinement;

    /// Parses the header form. The reason is cut to [`MAX_REASON`] characters and stripped of
    /// control characters, so what a worker sends can be shown on a terminal as it is.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(abi) = text.strip_prefix("landlock-v") {
            return abi
                .parse()
                .map(|abi| Self::Landlock { abi })
                .map_err(|_| UnknownConfinement);
        }
        let reason = text
            .strip_prefix("none:")
            .or_else(|| (text == "none").then_some(""))
            .ok_or(UnknownConfinement)?;
        let reason: String = reason
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        Ok(Self::Unconfined { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_form_round_trips() {
        for confinement in [
            Confinement::Landlock { abi: 7 },
            Confinement::Unconfined {
                reason: "the kernel has no Landlock".into(),
            },
        ] {
            assert_eq!(confinement.to_string().parse(), Ok(confinement));
        }
    }

    #[test]
    fn what_a_worker_sends_is_bounded_and_printable() {
        let long = format!("none: \u{1b}[31m{}", "x".repeat(500));
        let Ok(Confinement::Unconfined { reason }) = long.parse::<Confinement>() else {
            panic!("parses");
        };
        assert_eq!(reason.chars().count(), MAX_REASON);
        assert!(!reason.contains('\u{1b}'));
        for bad in ["", "landlock", "landlock-vX", "seccomp"] {
            assert_eq!(bad.parse::<Confinement>(), Err(UnknownConfinement), "{bad}");
        }
    }

    #[test]
    fn the_json_form_names_the_kind() {
        let json = serde_json::to_string(&Confinement::Landlock { abi: 7 }).unwrap();
        assert_eq!(json, r#"{"kind":"landlock","abi":7}"#);
        let none = Confinement::Unconfined { reason: "r".into() };
        let json = serde_json::to_string(&none).unwrap();
        assert_eq!(json, r#"{"kind":"none","reason":"r"}"#);
    }
}
