//! The credentials a swarm runs with: one JSON object per line, minted by the benchmark (or by
//! hand with `muster workers create` / `muster token create`).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    /// What the simulated machine presents as its machine id.
    pub machine_id: String,
    #[serde(flatten)]
    pub how: How,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How the simulated worker gets its identity.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum How {
    /// A pre-created worker: connect directly.
    Precreated { worker_id: String, api_key: String },
    /// Enroll with this token (`NAME.SECRET`) first, as `muster worker --token` does.
    Token { token: String },
}

pub fn read(path: &Path) -> anyhow::Result<Vec<Credential>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("`{}` line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

pub fn write(path: &Path, creds: &[Credential]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path)
            .with_context(|| format!("cannot create `{}`", path.display()))?,
    );
    for c in creds {
        serde_json::to_writer(&mut out, c)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// This process's share of a run split over `of` processes: every `of`-th credential starting
/// at `index`, each with its position in the whole list (which picks its source address).
pub fn slice(all: Vec<Credential>, index: usize, of: usize) -> Vec<(usize, Credential)> {
    let of = of.max(1);
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % of == index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(i: usize) -> Credential {
        Credential {
            name: format!("w-{i}"),
            machine_id: format!("machine-{i:04}"),
            how: How::Precreated {
                worker_id: "id".into(),
                api_key: "key".into(),
            },
        }
    }

    #[test]
    fn slices_partition_the_list() {
        let all: Vec<_> = (0..10).map(cred).collect();
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|i| slice(all.clone(), i, 3).into_iter().map(|(n, _)| n))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(
            slice(all, 1, 3)
                .iter()
                .map(|(_, c)| c.name.as_str())
                .collect::<Vec<_>>(),
            ["w-1", "w-4", "w-7"]
        );
    }

    #[test]
    fn the_file_format_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.jsonl");
        let creds = vec![
            cred(1),
            Credential {
                name: "r-1".into(),
                machine_id: "machine-r1".into(),
                how: How::Token {
                    token: "r-1.secret".into(),
                },
            },
        ];
        write(&path, &creds).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""kind":"token""#), "{text}");
        assert_eq!(read(&path).unwrap(), creds);
    }
}
