//! Backups of a data dir and restores into a new one, on real files and a real SQLite store.

use std::os::unix::fs::PermissionsExt;

use super::*;

const NOW: &str = "2026-05-01T12:00:00Z";

/// A data dir as a server leaves it: a database holding a setting, and the files a backup takes.
async fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join(DATABASE_FILE)).unwrap();
    store
        .write(|tx| tx.put_setting("marker", "before-backup"))
        .await
        .unwrap();
    store.close();
    for name in ENTRIES {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("contents of {name}\n")).unwrap();
    }
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_backup_restores_into_a_new_data_dir_owner_only() {
    let source = data_dir().await;
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("muster.tar");
    let manifest = create(source.path(), &archive, NOW.into()).unwrap();
    assert_eq!(mode(&archive), 0o600);
    assert_eq!(
        manifest.database,
        ArchivedDatabase::Sqlite {
            schema_version: muster_store::sqlite::LATEST_SCHEMA
        }
    );
    assert_eq!(manifest.files.len(), ENTRIES.len());
    // No temporary file is left beside the archive.
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    let target = out.path().join("restored");
    let restored = restore(&archive, &target, None).await.unwrap();
    assert_eq!(restored.manifest, manifest);
    assert_eq!(restored.tickets_forgotten, Some(0));
    assert_eq!(mode(&target), 0o700);
    for name in ENTRIES {
        let path = target.join(name);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("contents of {name}\n")
        );
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    assert_eq!(mode(&target.join(DATABASE_FILE)), 0o600);
    let store = Store::open_sqlite(&target.join(DATABASE_FILE)).unwrap();
    let marker = store.read(|tx| tx.get_setting("marker")).await.unwrap();
    store.close();
    assert_eq!(marker.as_deref(), Some("before-backup"));
}

#[tokio::test]
async fn restore_refuses_a_data_dir_that_is_not_empty() {
    let source = data_dir().await;
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("muster.tar");
    create(source.path(), &archive, NOW.into()).unwrap();
    let error = restore(&archive, source.path(), None).await.unwrap_err();
    assert!(matches!(error, BackupError::NotEmpty(_)), "{error}");
    // The data dir is as it was.
    assert_eq!(
        std::fs::read_to_string(source.path().join("server-id")).unwrap(),
        "contents of server-id\n"
    );
}

#[tokio::test]
async fn an_archive_with_anything_else_is_refused_and_leaves_nothing_behind() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("odd.tar");
    {
        let file = std::fs::File::create(&archive).unwrap();
        let mut tar = tar::Builder::new(file);
        let manifest = Manifest {
            format: FORMAT,
            muster_version: "0".into(),
            created_at: NOW.into(),
            database: ArchivedDatabase::Postgres,
            files: vec![],
            not_archived: vec![],
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, MANIFEST_FILE, json.as_slice())
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        tar.append_data(&mut header, "admin-token", b"abc".as_slice())
            .unwrap();
        // The `tar` crate will not write `..` itself: set the name's bytes by hand.
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o755);
        let name = b"../escape";
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        tar.append(&header, b"x".as_slice()).unwrap();
        tar.finish().unwrap();
    }
    let target = out.path().join("restored");
    let error = restore(&archive, &target, None).await.unwrap_err();
    assert!(
        matches!(&error, BackupError::NotABackup { reason, .. } if reason.contains("escape")),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(!out.path().join("escape").exists());
}

#[tokio::test]
async fn a_server_on_postgresql_archives_its_files_and_no_database() {
    let source = data_dir().await;
    let file = ServerFile {
        url: "https://127.0.0.1:7443".into(),
        listen: "127.0.0.1:7443".into(),
        pid: 1,
        tls_fingerprint: None,
        cert_file: Some("/etc/muster/cert.pem".into()),
        started_at: NOW.into(),
        version: "0".into(),
        diag_url: None,
        database: Some(DatabaseLocation::Postgres),
    };
    std::fs::write(
        source.path().join(local::SERVER_FILE),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("muster.tar");
    let manifest = create(source.path(), &archive, NOW.into()).unwrap();
    assert_eq!(manifest.database, ArchivedDatabase::Postgres);
    assert_eq!(
        manifest.not_archived,
        vec!["/etc/muster/cert.pem".to_owned()]
    );
    let target = out.path().join("restored");
    let restored = restore(&archive, &target, None).await.unwrap();
    assert_eq!(restored.tickets_forgotten, None);
    assert!(!target.join(DATABASE_FILE).exists());
    assert!(target.join("admin-token").exists());
}

#[tokio::test]
async fn a_backup_of_a_missing_database_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let error = create(dir.path(), &out.path().join("x.tar"), NOW.into()).unwrap_err();
    assert!(error.to_string().contains(DATABASE_FILE), "{error}");
    assert!(!out.path().join("x.tar").exists());
}
